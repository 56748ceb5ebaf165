/**
 * The `fetchModule` the Node binary hands the worker pool: a function cannot cross threads, so each worker
 * imports this module and makes its own undici-based upstream fetch (and connection pool) from it.
 * @module
 */
import { createUpstreamFetch, type UpstreamFetch } from './upstream-fetch.ts'

export default function makeUpstreamFetch(): UpstreamFetch {
  return createUpstreamFetch()
}

/** This module's URL: the .ts source or the built .js next to the running code, whichever is running. */
export const UPSTREAM_FETCH_MODULE: string = import.meta.url

/**
 * The `fetchModule` the Node binary hands the worker pool: a function cannot cross threads, so each worker
 * imports this module and makes its own undici-based upstream fetch (and connection pool) from it.
 *
 * Options travel in the module URL's query (`?http2=1`), the only thing the pool passes on: the factory is called
 * with no arguments, and an environment variable would be read by every module of the process. Node 20.20's ESM
 * loader (and tsx's, for the sources) keeps the query in `import.meta.url`; each distinct URL is its own instance.
 * @module
 */
import { createUpstreamFetch, type UpstreamFetch } from './upstream-fetch.ts'

export default function makeUpstreamFetch(): UpstreamFetch {
  return createUpstreamFetch({ http2: new URL(import.meta.url).searchParams.get('http2') === '1' })
}

/** This module's URL: the .ts source or the built .js next to the running code, whichever is running. */
export const UPSTREAM_FETCH_MODULE: string = import.meta.url.replace(/\?.*$/, '')

/** The module URL that makes each worker's fetch with these options. */
export function upstreamFetchModule(options: { http2: boolean }): string {
  return options.http2 ? `${UPSTREAM_FETCH_MODULE}?http2=1` : UPSTREAM_FETCH_MODULE
}

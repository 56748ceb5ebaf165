/**
 * `sluice/node`: serves a sluice fetch handler with `node:http` on Node ≥ 20.
 *
 * @example
 * ```ts
 * import { serve } from 'sluice/node'
 * const server = serve((request) => new Response('hi'), { port: 3000 })
 * console.log((await server.ready()).url)
 * process.once('SIGTERM', () => server.close({ timeoutMs: 30_000 }))
 * ```
 * @module
 */
export { serve, NodeServer } from './server.ts'
export type { NodeServeOptions } from './server.ts'
export type { CloseOptions, FetchHandler, Serve, ServeOptions, Server, ServerAddress } from '../../core/server.ts'
export { createUpstreamFetch } from './upstream-fetch.ts'
export type { UpstreamFetch, UpstreamFetchOptions } from './upstream-fetch.ts'

/**
 * The few parts of the `Bun` global that `sluice/bun` touches, typed structurally. Why not `@types/bun`: it
 * declares globals for the whole program, which broke consumers' `tsc` when a library pulled it in (the reason
 * srvx inlines its runtime types, h3js/srvx src/types/README.md). These shapes are a subset of Bun 1.4's own, so
 * the real objects satisfy them. https://bun.sh/docs/api/http
 * @module
 */

/** `Bun.serve()` options sluice passes. */
export interface BunServeConfig {
  port: number
  hostname: string
  /** Seconds a connection may stay idle; Bun's default is 10, 0 disables, at most 255. */
  idleTimeout?: number
  /** Bun's dev-mode error pages; sluice answers errors itself. */
  development?: boolean
  fetch(request: Request, server: BunServer): Response | Promise<Response>
}

/** What `Bun.serve()` returns. */
export interface BunServer {
  readonly port: number
  readonly hostname: string
  /** Stops listening; resolves once every connection is closed. `true` closes active connections at once. */
  stop(closeActiveConnections?: boolean): Promise<void>
  /** Sets the idle timeout (seconds, 0 = none) of the connection carrying `request`. */
  timeout(request: Request, seconds: number): void
}

/** The `Bun` global, as far as sluice uses it. */
export interface BunGlobal {
  readonly version: string
  serve(options: BunServeConfig): BunServer
}

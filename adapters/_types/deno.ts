/**
 * The few parts of the `Deno` namespace that `sluice/deno` touches, typed structurally. Why not the `deno` lib
 * types: they are global declarations that clash with @types/node in one program, and consumers on Node must
 * still type-check our sources (the reason srvx inlines its runtime types, h3js/srvx src/types/README.md). These
 * shapes are a subset of Deno 2.9's own. https://docs.deno.com/api/deno/~/Deno.serve
 * @module
 */

/** The TCP address `Deno.serve` reports to `onListen`. */
export interface DenoNetAddr {
  hostname: string
  port: number
}

/** `Deno.serve()` options sluice passes. */
export interface DenoServeConfig {
  port: number
  hostname: string
  onListen?(address: DenoNetAddr): void
  /** Called for a throwing handler and for a response body that errors mid-stream (denoland/deno#19867). */
  onError?(error: unknown): Response | Promise<Response>
}

/** The second handler argument. */
export interface DenoServeHandlerInfo {
  /**
   * Settles when the response is delivered or delivery failed. Absent before Deno 2.2; it rejected only for
   * a client lost before the response started in our measurements (shared/research/runtimes.md §1).
   */
  readonly completed?: Promise<void>
}

export type DenoServeHandler = (request: Request, info: DenoServeHandlerInfo) => Response | Promise<Response>

/** What `Deno.serve()` returns. */
export interface DenoHttpServer {
  /** Stops accepting, lets in-flight requests finish; resolves when done. */
  shutdown(): Promise<void>
}

/** The `Deno` namespace, as far as sluice uses it. */
export interface DenoNamespace {
  readonly version: { readonly deno: string }
  serve(options: DenoServeConfig, handler: DenoServeHandler): DenoHttpServer
}

/** A TCP or TLS connection (`Deno.Conn` / `Deno.TlsConn`), as far as ./deno/upstream-fetch.ts uses it. */
export interface DenoConn {
  /** Resolves with the bytes read into `buffer`, or null at EOF. */
  read(buffer: Uint8Array): Promise<number | null>
  write(bytes: Uint8Array): Promise<number>
  close(): void
  setNoDelay?(noDelay?: boolean): void
}

export interface DenoConnectTlsOptions {
  hostname: string
  port: number
  alpnProtocols?: string[]
  /** PEM certificates trusted besides the default roots. */
  caCerts?: string[]
}

/** The `Deno` networking calls ./deno/upstream-fetch.ts makes. https://docs.deno.com/api/deno/~/Deno.connect */
export interface DenoNet {
  readonly version: { readonly deno: string }
  connect(options: { hostname: string; port: number; signal?: AbortSignal }): Promise<DenoConn>
  connectTls(options: DenoConnectTlsOptions): Promise<DenoConn>
  /** Lets the process exit while only this timer is pending. */
  unrefTimer(id: number): void
}

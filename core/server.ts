/**
 * The HTTP server contract every runtime adapter (`sluice/node`, `sluice/bun`, `sluice/deno`) implements, plus
 * the few runtime-free helpers they share so that every runtime answers the same way. Adapters annotate their
 * export with these types (`export const serve: Serve<NodeServeOptions> = …`), so a drift is a type error.
 * @module
 */
import { invalidOption } from './validate.ts'

/**
 * The request handler: the core's one entry point. `request.signal` aborts when the client goes away, before or
 * while the response streams, and when `close()` cuts the connection at its deadline; never after a response was
 * delivered completely. A client that leaves mid-stream is also reported by `cancel()` on the response body.
 */
export type FetchHandler = (request: Request) => Response | Promise<Response>

/** The runtimes an adapter exists for. */
export type ServerRuntime = 'node' | 'bun' | 'deno'

/** Options every adapter accepts. Adapters extend this with runtime-specific ones. */
export interface ServeOptions {
  /** TCP port; `0` picks a free one (read it back from `ready()`). Default `3000`. */
  port?: number
  /**
   * Interface to bind. Default `'127.0.0.1'`: a gateway holds upstream credentials, so it is reachable from
   * other hosts only when asked to (`'0.0.0.0'` or `'::'`, e.g. in a container).
   */
  hostname?: string
  /**
   * Told about errors that reach the adapter: a handler that throws or rejects (the client gets a 500 JSON
   * error) and, on Node and Deno, a response body that errors mid-stream (the client gets a truncated response;
   * Bun offers no hook for that and logs it itself). Default `console.error`. Errors caused by the client
   * leaving are not reported.
   */
  onError?: (error: unknown) => void
}

/** Where a server listens, once bound. */
export interface ServerAddress {
  /** The bound interface, as given or as resolved (`'127.0.0.1'`, `'::'`, …). */
  hostname: string
  /** The bound port (the real one when `0` was asked for). */
  port: number
  /**
   * A URL a local client can use, without a trailing slash (`http://127.0.0.1:3000`): a wildcard bind
   * (`0.0.0.0`, `::`) is given as loopback, and IPv6 hosts are bracketed.
   */
  url: string
}

/** How `close()` treats responses still in flight. */
export interface CloseOptions {
  /**
   * Close every connection still open after this many milliseconds (in-flight responses are cut, their
   * bodies cancelled). Default: wait for in-flight responses however long they take.
   */
  timeoutMs?: number
  /** Close every connection now: the same as `timeoutMs: 0`. */
  force?: boolean
}

/** A running server. The same shape on every runtime. */
export interface Server {
  /** Which adapter this is. */
  readonly runtime: ServerRuntime
  /** Resolves once the server listens; rejects if it cannot bind (e.g. the port is taken). */
  ready(): Promise<ServerAddress>
  /**
   * Stops accepting connections at once (new ones are refused), lets in-flight responses finish, and resolves
   * when the last connection is closed. Idempotent: a later call may only make it more forceful (`force`, a
   * shorter `timeoutMs`), and every call returns the same completion.
   */
  close(options?: CloseOptions): Promise<void>
}

/** The signature of every adapter's `serve`. */
export type Serve<Options extends ServeOptions = ServeOptions> = (handler: FetchHandler, options?: Options) => Server

/** The JSON body of the 500 response a throwing handler turns into (OpenAI-compatible error shape). */
export const INTERNAL_ERROR_BODY = '{"error":{"message":"Internal Server Error","type":"server_error"}}'

/** A fresh 500 response for a handler that threw (a Response body can be read only once). */
export function internalErrorResponse(): Response {
  return new Response(INTERNAL_ERROR_BODY, {
    status: 500,
    headers: { 'content-type': 'application/json' },
  })
}

/**
 * Calls `handler`, turning a throw, a rejection or a value that is not a Response into the 500 JSON response
 * (reported to `onError`), so that every runtime answers a broken handler the same way and keeps serving.
 */
export async function respondSafely(
  handler: FetchHandler,
  request: Request,
  onError: (error: unknown) => void,
): Promise<Response> {
  try {
    const response = await handler(request)
    if (response instanceof Response) return response
    throw new TypeError(`The handler must return a Response, got ${Object.prototype.toString.call(response)}`)
  } catch (error) {
    // A handler that rejects because the client left (with `request.signal.reason`) is not a server error.
    if (!request.signal.aborted) onError(error)
    return internalErrorResponse()
  }
}

/** The default `onError`. */
export function logError(error: unknown): void {
  console.error('sluice: handler error:', error)
}

/** `port`, `hostname` and `onError` with defaults applied; throws naming a bad option. */
export function resolveServeOptions(options: ServeOptions = {}): Required<ServeOptions> {
  const { port = 3000, hostname = '127.0.0.1', onError = logError } = options
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
    invalidOption('port', 'an integer from 0 to 65535', port)
  }
  if (typeof hostname !== 'string' || hostname === '') invalidOption('hostname', 'a non-empty string', hostname)
  if (typeof onError !== 'function') invalidOption('onError', 'a function', onError)
  return { port, hostname, onError }
}

/** Validates `close()` options; returns the delay before connections are force-closed (`undefined`: never). */
export function resolveCloseDelay(options: CloseOptions = {}): number | undefined {
  const { timeoutMs, force = false } = options
  if (typeof force !== 'boolean') invalidOption('force', 'a boolean', force)
  if (force) return 0
  if (timeoutMs === undefined) return undefined
  if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs < 0) {
    invalidOption('timeoutMs', 'a finite number of milliseconds ≥ 0', timeoutMs)
  }
  return timeoutMs
}

/** Builds the `ServerAddress` of a bound socket (see `ServerAddress.url` for the wildcard/IPv6 rules). */
export function serverAddress(hostname: string, port: number): ServerAddress {
  const host = hostname === '0.0.0.0' ? '127.0.0.1' : hostname === '::' ? '::1' : hostname
  return { hostname, port, url: `http://${host.includes(':') ? `[${host}]` : host}:${port}` }
}

/** The abort reason adapters give `request.signal` when the client disconnects (what Bun and Deno use too). */
export function clientGoneError(): DOMException {
  return withoutStack(() => new DOMException('The client disconnected', 'AbortError'))
}

/** The abort reason when `close()` cuts a request at its deadline. */
export function serverClosedError(): DOMException {
  return withoutStack(() => new DOMException('The server closed the connection', 'AbortError'))
}

/**
 * Makes an abort reason without capturing a stack. Its stack (an adapter's close handler) says nothing, and it is
 * formatted on every disconnect: Node's stream destroy reads `err.stack` of the error it is given
 * (lib/internal/streams/destroy.js `checkError`, Node 20), and the reason reaches the upstream body's destroy —
 * 48 µs of CPU per disconnect in the binary's --cpu-prof. `Error.stackTraceLimit` is a V8 and JavaScriptCore
 * extension; where it is missing or not writable the reason just keeps its stack.
 */
function withoutStack<T>(make: () => T): T {
  const errorClass = Error as { stackTraceLimit?: number }
  const limit = errorClass.stackTraceLimit
  if (typeof limit !== 'number') return make()
  try {
    errorClass.stackTraceLimit = 0
  } catch {
    return make()
  }
  try {
    return make()
  } finally {
    errorClass.stackTraceLimit = limit
  }
}

/**
 * The force-close deadline of a closing server: `close()` may be called again with a shorter deadline, so the
 * earliest one wins; `settle()` drops a pending timer once the server is closed (a ref'd timer would otherwise
 * keep the process alive until the deadline).
 */
export class CloseDeadline {
  readonly #forceClose: () => void
  #deadline = Number.POSITIVE_INFINITY
  #timer: ReturnType<typeof setTimeout> | undefined
  #done = false

  constructor(forceClose: () => void) {
    this.#forceClose = forceClose
  }

  /** Force-closes after `delayMs` (`undefined`: no deadline) unless an earlier deadline is already set. */
  request(delayMs: number | undefined): void {
    if (delayMs === undefined || this.#done) return
    const deadline = Date.now() + delayMs
    if (deadline >= this.#deadline) return
    this.#deadline = deadline
    clearTimeout(this.#timer)
    if (delayMs === 0) this.#fire()
    else this.#timer = setTimeout(() => this.#fire(), delayMs)
  }

  /** The server closed: no force-close is needed any more. */
  settle(): void {
    this.#done = true
    clearTimeout(this.#timer)
  }

  #fire(): void {
    if (this.#done) return
    this.#done = true
    this.#forceClose()
  }
}

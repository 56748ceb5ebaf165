/**
 * The `node:http` server behind `sluice/node`.
 * @module
 */
import { createServer } from 'node:http'
import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import {
  clientGoneError,
  CloseDeadline,
  resolveCloseDelay,
  resolveServeOptions,
  respondSafely,
  serverAddress,
  serverClosedError,
} from '../../core/server.ts'
import type { CloseOptions, FetchHandler, Serve, ServeOptions, Server, ServerAddress } from '../../core/server.ts'
import { durationMs } from '../../core/validate.ts'
import { toRequest } from './request.ts'
import { sendResponse } from './response.ts'

/**
 * Options of `sluice/node`'s `serve`. The three timeouts defend against slow clients (slowloris) without ever
 * limiting how long a response may stream: none of them applies once the request has been received. `0`
 * disables one.
 */
export interface NodeServeOptions extends ServeOptions {
  /** Milliseconds a client has to send the complete request headers. Default `10_000` (Node's own: 60 s). */
  headersTimeout?: number
  /**
   * Milliseconds a client has to send the complete request, headers and body. Default `30_000` (Node's own:
   * 300 s); must be ≥ `headersTimeout` unless `0`.
   */
  requestTimeout?: number
  /**
   * Milliseconds an idle keep-alive connection stays open. Default `5_000` (Node's own). Behind a load
   * balancer, make it longer than the balancer's idle timeout, or it may reuse a connection being closed.
   */
  keepAliveTimeout?: number
}

/**
 * How often Node looks for connections past `headersTimeout`/`requestTimeout`. Node's default (30 s) would let
 * a 10 s header timeout fire anywhere between 10 and 40 s.
 */
const CONNECTIONS_CHECKING_INTERVAL_MS = 1_000

const LISTEN_BACKLOG = 65_535

const BAD_REQUEST_BODY = '{"error":{"message":"Bad Request","type":"invalid_request_error"}}'

/** Starts a `node:http` server for `handler`. Throws on invalid options; a bind failure rejects `ready()`. */
export const serve: Serve<NodeServeOptions> = (handler, options) => new NodeServer(handler, options)

// https://nodejs.org/docs/latest-v20.x/api/http.html#class-httpserver
/** A sluice server on `node:http`. */
export class NodeServer implements Server {
  readonly runtime = 'node'
  readonly #handler: FetchHandler
  readonly #onError: (error: unknown) => void
  readonly #server: HttpServer
  readonly #ready: Promise<ServerAddress>
  readonly #deadline: CloseDeadline
  #fallbackOrigin = 'http://localhost'
  #closing = false
  #forced = false
  #closed: Promise<void> | undefined
  /** Responses whose `'close'` has not been emitted yet. */
  #openResponses = 0
  #onResponsesClosed: (() => void) | undefined

  constructor(handler: FetchHandler, options: NodeServeOptions = {}) {
    if (typeof handler !== 'function') throw new TypeError('Expected `handler` to be a function')
    const { port, hostname, onError } = resolveServeOptions(options)
    const headersTimeout = durationMs('headersTimeout', options.headersTimeout ?? 10_000, { allowZero: true })
    const requestTimeout = durationMs('requestTimeout', options.requestTimeout ?? 30_000, { allowZero: true })
    const keepAliveTimeout = durationMs('keepAliveTimeout', options.keepAliveTimeout ?? 5_000, { allowZero: true })
    if (requestTimeout > 0 && (headersTimeout === 0 || headersTimeout > requestTimeout)) {
      throw new RangeError(
        `Expected \`headersTimeout\` (${headersTimeout}) to be > 0 and ≤ \`requestTimeout\` (${requestTimeout})`,
      )
    }
    this.#handler = handler
    this.#onError = onError
    this.#server = createServer({
      headersTimeout,
      requestTimeout,
      connectionsCheckingInterval: CONNECTIONS_CHECKING_INTERVAL_MS,
      // Node's default too; spelled out because SSE latency depends on it (no Nagle delay on small writes).
      noDelay: true,
    })
    this.#server.keepAliveTimeout = keepAliveTimeout
    this.#server.on('request', this.#onRequest)
    this.#deadline = new CloseDeadline(() => {
      this.#forced = true
      this.#server.closeAllConnections()
    })
    this.#ready = new Promise<ServerAddress>((resolve, reject) => {
      this.#server.once('error', reject)
      this.#server.once('listening', () => {
        this.#server.off('error', reject)
        const { address, port: boundPort } = this.#server.address() as AddressInfo
        const bound = serverAddress(address, boundPort)
        this.#fallbackOrigin = bound.url
        resolve(bound)
      })
    })
    // A caller that never awaits ready() must not get an unhandled rejection for a bind failure.
    this.#ready.catch(noop)
    // backlog: Node's default 511 drops SYNs when thousands of clients connect at once, and each drop costs the
    // client a 1, 3, 7, 15… s retry (bench/slow-streams.ts: 10 000 streams, TTFE p99 63 s). The kernel caps it
    // at net.core.somaxconn.
    this.#server.listen({ port, host: hostname, backlog: LISTEN_BACKLOG })
  }

  ready(): Promise<ServerAddress> {
    return this.#ready
  }

  close(options?: CloseOptions): Promise<void> {
    const delay = resolveCloseDelay(options)
    this.#closed ??= this.#beginClose()
    this.#deadline.request(delay)
    return this.#closed
  }

  async #beginClose(): Promise<void> {
    this.#closing = true
    const listening = await this.#ready.then(
      () => true,
      () => false,
    )
    if (!listening) return this.#deadline.settle()
    // server.close() stops listening and (Node ≥ 19) closes idle keep-alive connections; connections with a
    // response in flight are closed as each response ends (#onRequest).
    await new Promise<void>((resolve) => this.#server.close(() => resolve()))
    // The server's callback runs before the sockets' 'close' events (net counts a destroyed socket out at once):
    // wait for them too, so that when close() resolves every cut response has aborted its signal and cancelled
    // its body.
    if (this.#openResponses > 0) await new Promise<void>((resolve) => (this.#onResponsesClosed = resolve))
    this.#deadline.settle()
  }

  #onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const gone = new AbortController()
    // `res 'close'` with an unfinished response is the one reliable disconnect signal on Node: `req 'close'`
    // fires as soon as a request body is consumed (nodejs/node#38924) and `req 'aborted'` not at all then.
    this.#openResponses++
    res.once('close', () => {
      if (!res.writableFinished) gone.abort(this.#forced ? serverClosedError() : clientGoneError())
      // While closing, a keep-alive connection is closed as soon as its response is done.
      if (this.#closing) this.#server.closeIdleConnections()
      if (--this.#openResponses === 0) this.#onResponsesClosed?.()
    })
    if (this.#closing) res.shouldKeepAlive = false
    this.#respond(req, res, gone.signal).catch(this.#onError)
  }

  async #respond(req: IncomingMessage, res: ServerResponse, gone: AbortSignal): Promise<void> {
    let request: Request
    try {
      request = toRequest(req, gone, this.#fallbackOrigin)
    } catch {
      // A Host or header value that Node accepts but the Fetch API does not.
      res.writeHead(400, { 'content-type': 'application/json', 'content-length': BAD_REQUEST_BODY.length })
      res.end(BAD_REQUEST_BODY)
      return
    }
    const response = await respondSafely(this.#handler, request, this.#onError)
    await sendResponse(response, res, request.method, gone, this.#onError)
  }
}

function noop(): void {}

/**
 * `sluice/deno`: serves a sluice fetch handler with `Deno.serve` (Deno ≥ 2.2).
 *
 * Deno's `request.signal` aborts when the client leaves, but by default (2.9: "legacy abort",
 * denoland/deno#27005) also after every successfully completed response, and with `--unstable-no-legacy-abort`
 * not at all for a client that resets mid-stream (shared/research/runtimes.md §1). So the handler gets a Request
 * with its own signal: before the response it follows the runtime's signal; once the response streams, it aborts
 * when Deno cancels the body, which is the one hook that fired for every disconnect we measured. A completed
 * response never aborts it. Deno 2.9 prints a one-time deprecation warning about legacy abort the first time a
 * response completes (the adapter reads `request.signal`); `--unstable-no-legacy-abort` silences it.
 *
 * Streaming bodies are passed through a pull-through stream of our own, for two reasons Deno's API leaves no
 * other way to meet: the signal above, and `close({ timeoutMs })`: Deno's graceful `shutdown()` takes the server
 * resource, after which its forceful path (the serve `signal`) throws BadResource (2.9.6, ext/http
 * `op_http_cancel`), so the adapter cuts the streams still open at the deadline itself. The cost is one promise
 * per chunk: about 20% fewer one-event chunks per second on a bare server (measured on 2.9.6), and Deno's native
 * copy of a `fetch()` body returned unchanged is not used.
 *
 * For the upstream side, `createUpstreamFetch()` (./upstream-fetch.ts) is a fetch on `Deno.connect` to pass as
 * `createUpstreamClient({ fetch })`: Deno's own fetch delivers a streamed body one HTTP chunk per read, which
 * made it the gateway's bottleneck (0.2× of going direct at 500 concurrent 0 ms streams, 1.0× with it).
 *
 * @example
 * ```ts
 * import { serve } from 'sluice/deno'
 * const server = serve((request) => new Response('hi'), { port: 3000 })
 * console.log((await server.ready()).url)
 * ```
 * @module
 */
import type { DenoHttpServer, DenoNamespace, DenoServeHandlerInfo } from '../_types/deno.ts'
import { deferred } from '../../core/abort.ts'
import {
  clientGoneError,
  CloseDeadline,
  internalErrorResponse,
  resolveCloseDelay,
  resolveServeOptions,
  respondSafely,
  serverAddress,
  serverClosedError,
} from '../../core/server.ts'
import type { CloseOptions, FetchHandler, Serve, ServeOptions, Server, ServerAddress } from '../../core/server.ts'

export type { CloseOptions, FetchHandler, Serve, ServeOptions, Server, ServerAddress } from '../../core/server.ts'
export { createUpstreamFetch } from './upstream-fetch.ts'
export type { UpstreamFetch, UpstreamFetchOptions } from './upstream-fetch.ts'

/** Options of `sluice/deno`'s `serve`. */
export type DenoServeOptions = ServeOptions

/** Starts a `Deno.serve` server for `handler`. Throws on invalid options; a bind failure rejects `ready()`. */
export const serve: Serve<DenoServeOptions> = (handler, options) => new DenoServer(handler, options)

/** A request in flight: its handler's signal, and once a body streams, how to cut it. */
interface InFlight {
  readonly gone: AbortController
  cut?: (reason: unknown) => void
}

// https://docs.deno.com/api/deno/~/Deno.serve
/** A sluice server on `Deno.serve`. */
export class DenoServer implements Server {
  readonly runtime = 'deno'
  readonly #handler: FetchHandler
  readonly #onError: (error: unknown) => void
  readonly #server: DenoHttpServer | undefined
  readonly #ready: Promise<ServerAddress>
  readonly #inFlight = new Set<InFlight>()
  readonly #deadline: CloseDeadline
  /** What #cutAll errored the streams with: not an error to report. */
  #cutReason: unknown
  #closed: Promise<void> | undefined

  constructor(handler: FetchHandler, options: DenoServeOptions = {}) {
    if (typeof handler !== 'function') throw new TypeError('Expected `handler` to be a function')
    const { port, hostname, onError } = resolveServeOptions(options)
    const deno = (globalThis as { Deno?: DenoNamespace }).Deno
    if (deno === undefined) throw new TypeError('sluice/deno runs on Deno only: use sluice/node or sluice/bun')
    this.#handler = handler
    this.#onError = onError
    this.#deadline = new CloseDeadline(() => this.#cutAll())
    const listening = deferred<ServerAddress>()
    this.#ready = listening.promise
    this.#ready.catch(noop)
    try {
      this.#server = deno.serve(
        {
          port,
          hostname,
          onListen: (address) => listening.resolve(serverAddress(address.hostname, address.port)),
          // Reached only by a response body that errors mid-stream (the handler's own errors are caught first);
          // the response is already on the wire, so what this returns is never sent.
          onError: (error) => {
            if (error !== this.#cutReason) onError(error)
            return internalErrorResponse()
          },
        },
        this.#onRequest,
      )
    } catch (error) {
      // Deno binds synchronously: a taken port throws here. Same contract as the other runtimes: ready() rejects.
      listening.reject(error)
    }
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
    // shutdown() stops accepting and resolves once in-flight responses are done (or cut by #cutAll).
    await this.#server?.shutdown().catch(noop)
    this.#deadline.settle()
  }

  /** The force-close: every handler's signal aborts and every streaming body errors (the client sees a cut). */
  #cutAll(): void {
    const reason = (this.#cutReason = serverClosedError())
    for (const entry of this.#inFlight) {
      entry.gone.abort(reason)
      entry.cut?.(reason)
    }
    this.#inFlight.clear()
  }

  #onRequest = async (request: Request, info: DenoServeHandlerInfo): Promise<Response> => {
    // Without a handler, `completed` rejecting (client gone) is an uncaught error that can end the process
    // (denoland/deno#33166). It is not used otherwise: it resolved for clients lost mid-stream (runtimes.md §1).
    info.completed?.catch(noop)
    const entry: InFlight = { gone: new AbortController() }
    this.#inFlight.add(entry)
    const runtimeSignal = request.signal
    const disconnected = (): void => entry.gone.abort(runtimeSignal.reason)
    if (runtimeSignal.aborted) disconnected()
    else runtimeSignal.addEventListener('abort', disconnected, { once: true })
    let response: Response
    try {
      // A Request's signal cannot be replaced, only a new Request made: for a body this adds a proxy stream
      // (request bodies are small here), for GET it copies the head.
      response = await respondSafely(this.#handler, new Request(request, { signal: entry.gone.signal }), this.#onError)
    } finally {
      runtimeSignal.removeEventListener('abort', disconnected)
    }
    const body = response.body
    if (body === null || entry.gone.signal.aborted) {
      this.#inFlight.delete(entry)
      return response
    }
    return new Response(this.#passThrough(body, entry), response)
  }

  /*
   * The pull-through body. highWaterMark 0: it holds no chunk of its own and reads the handler's body only when
   * Deno asks for one, so socket backpressure reaches the source unchanged. Deno calling cancel() is the client
   * leaving: abort the handler's signal, cancel the source. `entry.cut` errors it for a force-close.
   */
  #passThrough(body: ReadableStream<Uint8Array>, entry: InFlight): ReadableStream<Uint8Array> {
    const reader = body.getReader()
    const done = (): boolean => this.#inFlight.delete(entry)
    return new ReadableStream<Uint8Array>(
      {
        start(controller) {
          entry.cut = (reason) => {
            controller.error(reason)
            void reader.cancel(reason).catch(noop)
          }
        },
        async pull(controller) {
          try {
            const { done: ended, value } = await reader.read()
            if (ended) {
              done()
              controller.close()
            } else controller.enqueue(value)
          } catch (error) {
            done()
            throw error
          }
        },
        cancel(reason) {
          done()
          entry.gone.abort(clientGoneError())
          return reader.cancel(reason)
        },
      },
      { highWaterMark: 0 },
    )
  }
}

function noop(): void {}

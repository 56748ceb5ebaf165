/**
 * `sluice/bun`: serves a sluice fetch handler with `Bun.serve` (Bun ≥ 1.4).
 *
 * Bun needs little adapting: `request.signal` aborts exactly when the client leaves (never after a complete
 * response), the body's `cancel()` runs on a disconnect, and a `ReadableStream` body honours socket
 * backpressure since 1.4 (oven-sh/bun#32469; 1.3 buffered without bound). What it needs is its idle timeout kept
 * off responses (see `BunServeOptions.idleTimeout`).
 *
 * Known gap (Bun 1.4.5, oven-sh/bun#33660 open): Bun sends the end of a streaming response's head (Date,
 * Transfer-Encoding, the blank line) only with the first body chunk, so a client's `fetch()` resolves at the
 * first event, not when the handler returns. Start event streams with a chunk (an SSE comment) to send it early.
 *
 * @example
 * ```ts
 * import { serve } from 'sluice/bun'
 * const server = serve((request) => new Response('hi'), { port: 3000 })
 * console.log((await server.ready()).url)
 * ```
 * @module
 */
import type { BunGlobal, BunServer as NativeBunServer } from '../_types/bun.ts'
import {
  CloseDeadline,
  resolveCloseDelay,
  resolveServeOptions,
  respondSafely,
  serverAddress,
} from '../../core/server.ts'
import type { CloseOptions, FetchHandler, Serve, ServeOptions, Server, ServerAddress } from '../../core/server.ts'
import { invalidOption } from '../../core/validate.ts'

export type { CloseOptions, FetchHandler, Serve, ServeOptions, Server, ServerAddress } from '../../core/server.ts'

/** Options of `sluice/bun`'s `serve`. */
export interface BunServeOptions extends ServeOptions {
  /**
   * Seconds a connection may sit idle before it has carried a request (Bun's `idleTimeout`): the slow-client
   * defence. Default `10` (Bun's), at most `255`. Bun applies the same timer to responses and closed a quiet SSE
   * stream after about 12 s (oven-sh/bun#27479, reproduced on 1.4.5), so every request switches it off for its
   * connection with `server.timeout(request, 0)`; how long a quiet stream may stay open is the gateway's
   * idle-timeout policy, as on Node and Deno. Bun keeps that exemption for the rest of the connection's life
   * (measured on 1.4.5), so an idle keep-alive connection that has served a request is not closed by Bun.
   */
  idleTimeout?: number
}

/** Starts a `Bun.serve` server for `handler`. Throws on invalid options; a bind failure rejects `ready()`. */
export const serve: Serve<BunServeOptions> = (handler, options) => new BunServer(handler, options)

// https://bun.sh/docs/api/http
/** A sluice server on `Bun.serve`. */
export class BunServer implements Server {
  readonly runtime = 'bun'
  readonly #server: NativeBunServer | undefined
  readonly #ready: Promise<ServerAddress>
  readonly #deadline: CloseDeadline
  #closed: Promise<void> | undefined

  constructor(handler: FetchHandler, options: BunServeOptions = {}) {
    if (typeof handler !== 'function') throw new TypeError('Expected `handler` to be a function')
    const { port, hostname, onError } = resolveServeOptions(options)
    const idleTimeout = options.idleTimeout ?? 10
    if (!Number.isInteger(idleTimeout) || idleTimeout < 0 || idleTimeout > 255) {
      invalidOption('idleTimeout', 'an integer number of seconds from 0 to 255', idleTimeout)
    }
    const bun = (globalThis as { Bun?: BunGlobal }).Bun
    if (bun === undefined) throw new TypeError('sluice/bun runs on Bun only: use sluice/node or sluice/deno')
    let server: NativeBunServer | undefined
    try {
      server = bun.serve({
        port,
        hostname,
        idleTimeout,
        development: false,
        fetch(request, native) {
          native.timeout(request, 0)
          return respondSafely(handler, request, onError)
        },
      })
      this.#ready = Promise.resolve(serverAddress(server.hostname, server.port))
    } catch (error) {
      // Bun binds synchronously: a taken port throws here. Same contract as the other runtimes: ready() rejects.
      this.#ready = Promise.reject(error)
      this.#ready.catch(noop)
    }
    this.#server = server
    this.#deadline = new CloseDeadline(() => void server?.stop(true))
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
    // stop(false): stop listening, let in-flight responses finish, close idle connections; resolves when the
    // last connection is gone (measured on 1.4.5). A later stop(true) (the deadline) cuts what is left.
    await this.#server?.stop(false)
    this.#deadline.settle()
  }
}

function noop(): void {}

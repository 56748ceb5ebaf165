/**
 * A `fetch` for the upstream on Node, on undici's dispatcher API (`Agent.request`) instead of Node 20's global
 * fetch. Same input and output types (a Web `Response` whose body is a `ReadableStream`), so the core's upstream
 * client is unchanged; the difference is cost. Node 20's fetch runs the whole Fetch algorithm per call (Request
 * and Headers objects, fetch params, timing info, a body tee for any clone) and was the largest item in the
 * binary's `--cpu-prof`; through it the gateway reached 0.42× of going direct at 500 concurrent 0 ms streams,
 * against 0.98× for the same pass-through on `Agent.request` (bench/RESULTS.md, same machine and run).
 *
 * What it does not do is what the gateway never asks for: following redirects (`redirect: 'follow'`, the
 * default of fetch, and any input that is a `Request` or a streaming body are handed to the global fetch instead,
 * so this stays a correct fetch), caches, cookies, CORS. `redirect: 'error'` behaves as in fetch: a 3xx with a
 * Location header is a network error (a TypeError, the response body discarded).
 *
 * Timeouts: undici's own headers and body timeouts (300 s by default) are off; the gateway has a queue timeout
 * until the headers and a per-read idle timeout after, which are the ones its users configure.
 *
 * `http2: true` multiplexes the requests over a few HTTP/2 connections (./http2-pool.ts): h2 by ALPN over https,
 * h2c with prior knowledge over http (the upstream must serve h2c). Same Response, body and errors as HTTP/1.1.
 * @module
 */
import { rootCertificates } from 'node:tls'
import { Agent } from 'undici'
import type { Dispatcher } from 'undici'
import { NULL_BODY_STATUSES, REDIRECT_STATUSES } from '../_fetch-statuses.ts'
import { invalidOption, nonNegativeInteger, positiveInteger } from '../../core/validate.ts'
import { createHttp2Pool } from './http2-pool.ts'

export interface UpstreamFetchOptions {
  /** Connections per upstream origin. Default: unlimited (the gateway's permits are the limit). */
  connections?: number
  /** How long an idle keep-alive connection stays open, > 0 (undici has no 0). Default 4000 ms (undici's). */
  keepAliveTimeoutMs?: number
  /** TCP (and TLS) connect timeout; 0: none (undici's meaning). Default 10000 ms. */
  connectTimeoutMs?: number
  /**
   * Speak HTTP/2 to the upstream, many streams per connection: h2 negotiated by ALPN over https (an upstream that
   * picks HTTP/1.1 fails the request), h2c with prior knowledge over http, which needs an upstream that serves h2c
   * (an HTTP/1.1-only one fails every request). Default false: HTTP/1.1, one connection per concurrent request.
   */
  http2?: boolean
  /**
   * PEM certificates trusted for https upstreams besides Node's default roots (an upstream behind a private CA; the
   * same option as `sluice/deno`'s). Node's TLS `ca` replaces the roots, so they are passed along with these.
   */
  caCerts?: string[]
}

/** What the fetch needs of a dispatcher: undici's `Agent` (HTTP/1.1) or ./http2-pool.ts. */
interface UpstreamDispatcher {
  request(options: Dispatcher.RequestOptions): Promise<Dispatcher.ResponseData>
  close(): Promise<void>
}

/** A fetch-compatible function with the connection pool it owns. */
export interface UpstreamFetch {
  (input: string | URL | Request, init?: RequestInit): Promise<Response>
  /** Closes the idle connections and waits for those in use to finish. */
  close(): Promise<void>
}


/** Node's default roots plus `caCerts`, or undefined (the defaults) without any. */
function trustedCertificates(caCerts: unknown): string[] | undefined {
  if (caCerts === undefined) return undefined
  if (!Array.isArray(caCerts) || !caCerts.every((cert) => typeof cert === 'string')) {
    invalidOption('caCerts', 'an array of PEM strings', caCerts)
  }
  return caCerts.length === 0 ? undefined : [...rootCertificates, ...caCerts]
}

export function createUpstreamFetch(options: UpstreamFetchOptions = {}): UpstreamFetch {
  if (typeof options !== 'object' || options === null) invalidOption('options', 'an object', options)
  const connections = options.connections === undefined ? null : positiveInteger('connections', options.connections)
  // Positive, not non-negative: undici rejects a keepAliveTimeout of 0, but only when its pool makes the first
  // connection, so 0 passed here would turn every later request into a 'fetch failed'.
  const keepAliveTimeout = positiveInteger('keepAliveTimeoutMs', options.keepAliveTimeoutMs ?? 4_000)
  const connectTimeout = nonNegativeInteger('connectTimeoutMs', options.connectTimeoutMs ?? 10_000)
  const http2 = options.http2 === undefined ? false : options.http2
  if (typeof http2 !== 'boolean') invalidOption('http2', 'a boolean', http2)
  const ca = trustedCertificates(options.caCerts)
  const dispatcher: UpstreamDispatcher = http2
    ? createHttp2Pool({ connections, keepAliveTimeout, connectTimeout, ca })
    : new Agent({
      connections,
      keepAliveTimeout,
      connect: { timeout: connectTimeout, ...(ca ? { ca } : {}) },
      headersTimeout: 0,
      bodyTimeout: 0,
    })

  const upstreamFetch = (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const { redirect = 'follow', body = null } = init
    const plainBody = body === null || typeof body === 'string' || body instanceof Uint8Array || body instanceof ArrayBuffer
    if (input instanceof Request || redirect === 'follow' || !plainBody) return globalThis.fetch(input, init)
    return request(dispatcher, http2, new URL(input), init, body as string | Uint8Array | ArrayBuffer | null)
  }
  return Object.assign(upstreamFetch, { close: () => dispatcher.close() })
}

async function request(
  dispatcher: UpstreamDispatcher,
  http2: boolean,
  url: URL,
  init: RequestInit,
  body: string | Uint8Array | ArrayBuffer | null,
): Promise<Response> {
  const signal = init.signal ?? undefined
  signal?.throwIfAborted()
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new TypeError('fetch failed', { cause: new Error(`unsupported protocol ${url.protocol}`) })
  }
  const method = (init.method ?? 'GET').toUpperCase()
  let data: Dispatcher.ResponseData
  try {
    data = await dispatcher.request({
      origin: url.origin,
      path: url.pathname + url.search,
      method: method as Dispatcher.HttpMethod,
      headers: headerList(init.headers),
      body: body instanceof ArrayBuffer ? new Uint8Array(body) : body,
      // Over h2, undici 7.30 sends a non-idempotent request (a POST, by default) only when nothing else runs on
      // the connection: one stream per connection. The flag changes nothing else there (no retry reads it), and
      // the HTTP/1.1 agent keeps the default (it would allow pipelining behind a long stream).
      ...(http2 ? { idempotent: true } : {}),
      ...(signal ? { signal } : {}),
    })
  } catch (error) {
    // As fetch: an abort rejects with the signal's reason, anything else is a TypeError with the cause.
    if (signal?.aborted) throw signal.reason
    throw new TypeError('fetch failed', { cause: error })
  }
  // No statusText: a reason phrase Node's parser accepts may be one the Response constructor rejects, and nothing
  // downstream shows it (the gateway answers with its own responses).
  const { statusCode: status, headers: rawHeaders, body: source } = data
  // A destroyed body emits 'error'; the web stream's reads see it through the iterator, this only keeps an error
  // nobody waits for (a body discarded below, or cancelled between reads) from becoming an uncaught exception.
  source.on('error', noop)
  const headers = new Headers()
  for (const [name, value] of Object.entries(rawHeaders)) {
    if (Array.isArray(value)) for (const item of value) headers.append(name, item)
    else if (value !== undefined) headers.append(name, value)
  }
  if (init.redirect === 'error' && REDIRECT_STATUSES.has(status) && headers.has('location')) {
    source.destroy()
    throw new TypeError('fetch failed', { cause: new Error(`unexpected redirect (${status}) with redirect: 'error'`) })
  }
  if (status < 200 || status > 599) {
    source.destroy()
    throw new TypeError('fetch failed', { cause: new Error(`the upstream answered with status ${status}`) })
  }
  if (NULL_BODY_STATUSES.has(status) || method === 'HEAD') {
    source.dump().catch(noop)
    return new Response(null, { status, headers })
  }
  return new Response(webBody(source), { status, headers })
}

/**
 * undici's body (a Node Readable) as a pull-based web stream: read only when the consumer pulls (highWaterMark
 * 0), so backpressure reaches undici's own buffer and then TCP. Cancelling destroys the body, which makes undici
 * destroy the socket at once (the upstream sees its connection close); a signal abort errors the body with the
 * signal's reason, which the read rejects with.
 *
 * Each pull takes everything buffered, as one chunk (`read()` without a size). undici pushes one piece per HTTP
 * chunk, and an upstream that writes one SSE event per chunk would otherwise cost one forwarder pass and one
 * client write per event however much had arrived (cost is per chunk, not per byte): a 52-event stream read
 * one piece at a time was 53 chunks downstream; read like this it is as many as the socket reads that carried it.
 */
function webBody(source: Dispatcher.ResponseData['body']): ReadableStream<Uint8Array> {
  let wake: (() => void) | undefined
  const notify = (): void => {
    const resolve = wake
    wake = undefined
    resolve?.()
  }
  source.on('readable', notify)
  source.on('end', notify)
  source.on('close', notify)
  source.on('error', notify)
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        for (;;) {
          const chunk = source.read() as Uint8Array | null
          if (chunk !== null) return controller.enqueue(chunk)
          if (source.readableEnded) return controller.close()
          if (source.errored) throw source.errored
          if (source.destroyed) throw new TypeError('The upstream body was closed before it ended')
          await new Promise<void>((resolve) => (wake = resolve))
        }
      },
      cancel(reason) {
        source.destroy(reason instanceof Error ? reason : undefined)
      },
    },
    { highWaterMark: 0 },
  )
}

function headerList(headers: HeadersInit | undefined): Record<string, string> | string[] | undefined {
  if (headers === undefined) return undefined
  if (headers instanceof Headers) {
    const list: string[] = []
    headers.forEach((value, name) => list.push(name, value))
    return list
  }
  if (Array.isArray(headers)) return headers.flat()
  return headers as Record<string, string>
}

function noop(): void {}

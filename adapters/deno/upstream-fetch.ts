/**
 * A `fetch` for the upstream on Deno: HTTP/1.1 on `Deno.connect`/`Deno.connectTls` with a keep-alive pool,
 * instead of Deno's global fetch. Same input and output types (a Web `Response` whose body is a `ReadableStream`),
 * so the core's upstream client is unchanged; the difference is how many chunks a stream is cut into.
 *
 * Why (measured on Deno 2.9.6, 2 shared cores, bench/e2e c500-d0, one event per upstream write): Deno's fetch
 * hands the body over one HTTP chunk at a time, however many are already buffered (hyper yields one frame per
 * `op_read`), and each read allocates and zero-fills a fresh 64 KiB buffer (`readableStreamForRid`'s
 * autoAllocateChunkSize). So a stream of 53 events costs 53 reads, 53 enqueues downstream and 53 response
 * writes, about 45 µs of CPU per event through one web stream: a bare `Deno.serve` + `fetch` pass-through
 * that reads the body in JS reached 0.3× of going direct, the same loop on this client 1.0× (one 13 KiB read per
 * stream at that load). Reading the socket returns whatever has arrived, so a busy gateway forwards fewer,
 * larger chunks, and the read buffer is one per connection, reused.
 *
 * What it does not do is what the gateway never asks for, so those requests go to the global fetch instead and
 * this stays a correct fetch: following redirects (`redirect: 'follow'`, the default), a `Request` input, a
 * streaming request body, a caller's own `accept-encoding`, protocols other than http/https, HTTP/2, proxies
 * (create it only when no HTTP(S)_PROXY applies: examples/deno-gateway.ts checks). `redirect: 'error'` behaves as
 * in fetch: a 3xx with a Location header is a network error. Bodies are not decompressed (no `accept-encoding`
 * is sent), except gzip/deflate a server sends unasked.
 *
 * A request sent on a kept-alive connection that the server had already closed (EOF or reset before any byte of
 * the response) is sent once more on a new connection, as browsers do: the server closed it idle, so it never
 * saw the request. Idle connections are closed after `keepAliveTimeoutMs`, or 1 s before the server's own
 * `Keep-Alive: timeout`.
 * @module
 */
import type { DenoConn, DenoNet } from '../_types/deno.ts'
import { NULL_BODY_STATUSES, REDIRECT_STATUSES } from '../_fetch-statuses.ts'
import { concatBytes } from '../../core/bytes.ts'
import { invalidOption, positiveInteger } from '../../core/validate.ts'
import { bodyDecoder, type BodyDecoder, headerValues, Http1ParseError, parseResponseHead } from './http1-parser.ts'
import type { ResponseHead } from './http1-parser.ts'

export interface UpstreamFetchOptions {
  /** How long an idle keep-alive connection stays open. Default 4000 ms (undici's). */
  keepAliveTimeoutMs?: number
  /** TCP (and TLS) connect timeout. Default 10000 ms. */
  connectTimeoutMs?: number
  /** Idle connections kept per origin. Default 1024. */
  maxIdlePerOrigin?: number
  /** PEM certificates trusted for https upstreams besides the default roots (as `Deno.createHttpClient`'s). */
  caCerts?: string[]
}

/** A fetch-compatible function with the connection pool it owns. */
export interface UpstreamFetch {
  (input: string | URL | Request, init?: RequestInit): Promise<Response>
  /** Closes the idle connections; those in use close when their response ends. */
  close(): Promise<void>
}

/**
 * Per connection, reused for every read: a read returns at most this much. 16 KiB holds a whole 52-event bench
 * stream (13 KiB per read at c500-d0); 8–64 KiB made no difference to throughput there, and a connection held by a
 * slow stream keeps its buffer, so the smaller one (10 000 slow streams: 160 MiB, not 640).
 */
const READ_BUFFER_BYTES = 16 * 1024
/** Stop reusing a connection this long before the server's advertised keep-alive timeout ends (undici's margin). */
const KEEP_ALIVE_MARGIN_MS = 1_000
/** Headers this client writes itself. */
const OWN_HEADERS = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive'])

const encoder = new TextEncoder()

export function createUpstreamFetch(options: UpstreamFetchOptions = {}): UpstreamFetch {
  if (typeof options !== 'object' || options === null) invalidOption('options', 'an object', options)
  const deno = (globalThis as { Deno?: DenoNet }).Deno
  if (deno === undefined) throw new TypeError('This upstream fetch runs on Deno only')
  const pool = new ConnectionPool(deno, {
    keepAliveTimeoutMs: positiveInteger('keepAliveTimeoutMs', options.keepAliveTimeoutMs ?? 4_000),
    connectTimeoutMs: positiveInteger('connectTimeoutMs', options.connectTimeoutMs ?? 10_000),
    maxIdlePerOrigin: positiveInteger('maxIdlePerOrigin', options.maxIdlePerOrigin ?? 1024),
    caCerts: caCertsOption(options.caCerts),
  })
  const userAgent = `Deno/${deno.version.deno}`

  const upstreamFetch = (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const { redirect = 'follow', body = null } = init
    const plainBody =
      body === null || typeof body === 'string' || body instanceof Uint8Array || body instanceof ArrayBuffer
    if (input instanceof Request || redirect === 'follow' || !plainBody) return globalThis.fetch(input, init)
    const url = new URL(input)
    const headers = new Headers(init.headers)
    if ((url.protocol !== 'http:' && url.protocol !== 'https:') || headers.has('accept-encoding')) {
      return globalThis.fetch(input, init)
    }
    if (!headers.has('user-agent')) headers.set('user-agent', userAgent)
    if (!headers.has('accept')) headers.set('accept', '*/*')
    return request(pool, url, init, headers, body as string | Uint8Array | ArrayBuffer | null)
  }
  return Object.assign(upstreamFetch, { close: () => Promise.resolve(pool.close()) })
}

/** The request head and body as the bytes of one write. */
function serialize(method: string, url: URL, headers: Headers, body: Uint8Array | null): Uint8Array {
  let head = `${method} ${url.pathname}${url.search} HTTP/1.1\r\nhost: ${url.host}\r\n`
  // Headers has validated names and values (no CR/LF), and yields them lowercase.
  headers.forEach((value, name) => {
    if (!OWN_HEADERS.has(name)) head += `${name}: ${value}\r\n`
  })
  if (body !== null || method === 'POST' || method === 'PUT' || method === 'PATCH') {
    head += `content-length: ${body?.byteLength ?? 0}\r\n`
  }
  const bytes = encoder.encode(`${head}\r\n`)
  return body === null || body.byteLength === 0 ? bytes : concatBytes([bytes, body])
}

async function request(
  pool: ConnectionPool,
  url: URL,
  init: RequestInit,
  headers: Headers,
  rawBody: string | Uint8Array | ArrayBuffer | null,
): Promise<Response> {
  const signal = init.signal ?? undefined
  signal?.throwIfAborted()
  const method = (init.method ?? 'GET').toUpperCase()
  const body = typeof rawBody === 'string'
    ? encoder.encode(rawBody)
    : rawBody instanceof ArrayBuffer
    ? new Uint8Array(rawBody)
    : rawBody
  const bytes = serialize(method, url, headers, body)
  let pooled = true
  for (;;) {
    try {
      const connection = (pooled ? pool.take(url.origin) : undefined) ?? (await pool.open(url, signal))
      return await exchange(pool, connection, method, init.redirect, bytes, signal)
    } catch (error) {
      // As fetch: an abort rejects with the signal's reason, anything else is a TypeError with the cause.
      if (signal?.aborted) throw signal.reason
      // A pooled connection the server had closed: once more on a new one (which is never stale: the loop ends).
      if (error instanceof StaleConnection) {
        pooled = false
        continue
      }
      throw fetchFailed(error)
    }
  }
}

/** Sends the request on `connection` and resolves with the response once its head has arrived. */
async function exchange(
  pool: ConnectionPool,
  connection: Connection,
  method: string,
  redirect: RequestRedirect | undefined,
  bytes: Uint8Array,
  signal: AbortSignal | undefined,
): Promise<Response> {
  const { buffer } = connection
  // Until the body is handed over, an abort closes the connection: the pending write or read rejects at once.
  const abort = (): void => connection.destroy()
  signal?.addEventListener('abort', abort, { once: true })
  try {
    let received = 0
    let head: ResponseHead | undefined
    try {
      await writeAll(connection.conn, bytes)
      for (;;) {
        const read = await connection.conn.read(buffer.subarray(received))
        if (read === null) throw new Error('the upstream closed the connection before the response')
        received += read
        head = parseResponseHead(buffer.subarray(0, received))
        // Interim responses (100 Continue, 103 Early Hints) are dropped: the final one follows.
        while (head !== undefined && head.status >= 100 && head.status < 200 && head.status !== 101) {
          buffer.copyWithin(0, head.length, received)
          received -= head.length
          head = parseResponseHead(buffer.subarray(0, received))
        }
        if (head !== undefined) break
        // parseResponseHead throws past MAX_HEAD_BYTES first; this keeps a full buffer from a zero-length read.
        if (received === buffer.byteLength) throw new Http1ParseError('response head larger than the read buffer')
      }
      signal?.throwIfAborted()
    } catch (error) {
      connection.destroy()
      if (connection.reused && received === 0 && !signal?.aborted && !(error instanceof Http1ParseError)) {
        throw new StaleConnection()
      }
      throw error
    }
    const responseHeaders = new Headers()
    for (const [name, value] of head.headers) responseHeaders.append(name, value)
    const { status } = head
    if (redirect === 'error' && REDIRECT_STATUSES.has(status) && responseHeaders.has('location')) {
      throw new Error(`unexpected redirect (${status}) with redirect: 'error'`)
    }
    if (status < 200 || status > 599) throw new Error(`the upstream answered with status ${status}`)
    const decoder = bodyDecoder(method, head)
    const reusable = head.minorVersion === 1 && !hasToken(headerValues(head, 'connection'), 'close')
    const idleMs = keepAliveMs(head, pool.keepAliveTimeoutMs)
    const init = { status, statusText: head.statusText, headers: responseHeaders }
    const leftover = buffer.subarray(head.length, received)
    if (NULL_BODY_STATUSES.has(status) || method === 'HEAD') {
      decoder.push(leftover)
      pool.release(connection, reusable && decoder.done && decoder.extra === 0 ? idleMs : 0)
      return new Response(null, init)
    }
    const body = new Http1Body(pool, connection, decoder, leftover, reusable ? idleMs : 0, signal)
    return new Response(decompressed(body.stream, responseHeaders), init)
  } catch (error) {
    connection.destroy()
    throw error
  } finally {
    // From here on the body follows the signal (Http1Body).
    signal?.removeEventListener('abort', abort)
  }
}

/**
 * A response body read off its connection. Pull-based (highWaterMark 0): the socket is read only when the
 * consumer asks, so a slow client stops the reads and TCP flow control stops the upstream. Each read is decoded
 * (chunked framing removed) and copied out of the connection's buffer as one chunk. Cancelling closes the
 * connection (the upstream sees it at once); the signal aborting errors the body with its reason.
 */
class Http1Body {
  readonly stream: ReadableStream<Uint8Array>
  readonly #pool: ConnectionPool
  readonly #connection: Connection
  readonly #decoder: BodyDecoder
  readonly #idleMs: number
  readonly #signal: AbortSignal | undefined
  /** Ends the body when the signal aborts. */
  readonly #abort: () => void
  /** The body bytes that came with the head, copied. */
  #first: Uint8Array | undefined
  #ended = false

  constructor(
    pool: ConnectionPool,
    connection: Connection,
    decoder: BodyDecoder,
    leftover: Uint8Array,
    idleMs: number,
    signal: AbortSignal | undefined,
  ) {
    this.#pool = pool
    this.#connection = connection
    this.#decoder = decoder
    this.#idleMs = idleMs
    this.#signal = signal
    this.#first = copy(decoder.push(leftover))
    let controller!: ReadableStreamDefaultController<Uint8Array>
    this.stream = new ReadableStream<Uint8Array>(
      {
        start: (c) => {
          controller = c
        },
        pull: (c) => this.#pull(c),
        cancel: () => this.#end(false),
      },
      { highWaterMark: 0 },
    )
    this.#abort = () => {
      if (this.#ended) return
      this.#end(false)
      controller.error(this.#signal?.reason)
    }
    signal?.addEventListener('abort', this.#abort, { once: true })
    if (decoder.done) this.#end(decoder.extra === 0)
  }

  async #pull(controller: ReadableStreamDefaultController<Uint8Array>): Promise<void> {
    const first = this.#first
    if (first !== undefined) {
      this.#first = undefined
      controller.enqueue(first)
      if (this.#decoder.done) controller.close()
      return
    }
    if (this.#decoder.done) return controller.close()
    const { conn, buffer } = this.#connection
    for (;;) {
      let read: number | null
      try {
        read = await conn.read(buffer)
      } catch (error) {
        if (this.#ended) return
        this.#end(false)
        throw this.#signal?.aborted ? this.#signal.reason : bodyFailed(error)
      }
      if (this.#ended) return
      if (read === null) {
        const complete = this.#decoder.end()
        this.#end(false)
        if (complete) return controller.close()
        throw bodyFailed(new Error('the upstream closed the connection mid-body'))
      }
      let bytes: Uint8Array | undefined
      try {
        bytes = copy(this.#decoder.push(buffer.subarray(0, read)))
      } catch (error) {
        this.#end(false)
        throw bodyFailed(error)
      }
      if (this.#decoder.done) this.#end(this.#decoder.extra === 0)
      if (bytes !== undefined) controller.enqueue(bytes)
      if (this.#decoder.done) return controller.close()
      if (bytes !== undefined) return
    }
  }

  /** Once: the connection back to the pool (a complete body, `reusable`) or closed. */
  #end(reusable: boolean): void {
    if (this.#ended) return
    this.#ended = true
    this.#signal?.removeEventListener('abort', this.#abort)
    this.#pool.release(this.#connection, reusable ? this.#idleMs : 0)
  }
}

/** A connection and its read buffer. */
class Connection {
  readonly conn: DenoConn
  readonly origin: string
  readonly buffer = new Uint8Array(READ_BUFFER_BYTES)
  /** It carried a response before: the server may have closed it while it sat idle. */
  reused = false
  closed = false
  idleTimer: ReturnType<typeof setTimeout> | undefined

  constructor(conn: DenoConn, origin: string) {
    this.conn = conn
    this.origin = origin
  }

  destroy(): void {
    if (this.closed) return
    this.closed = true
    clearTimeout(this.idleTimer)
    try {
      this.conn.close()
    } catch {
      // Already closed by the runtime.
    }
  }
}

interface PoolSettings {
  keepAliveTimeoutMs: number
  connectTimeoutMs: number
  maxIdlePerOrigin: number
  caCerts: string[] | undefined
}

class ConnectionPool {
  readonly #deno: DenoNet
  readonly #settings: PoolSettings
  readonly #idle = new Map<string, Connection[]>()
  #closed = false

  constructor(deno: DenoNet, settings: PoolSettings) {
    this.#deno = deno
    this.#settings = settings
  }

  get keepAliveTimeoutMs(): number {
    return this.#settings.keepAliveTimeoutMs
  }

  /** The most recently used idle connection to `origin` (the likeliest to be still open). */
  take(origin: string): Connection | undefined {
    const connection = this.#idle.get(origin)?.pop()
    if (connection === undefined) return undefined
    clearTimeout(connection.idleTimer)
    return connection
  }

  async open(url: URL, signal: AbortSignal | undefined): Promise<Connection> {
    if (this.#closed) throw new Error('the upstream fetch was closed')
    const hostname = url.hostname
    const tls = url.protocol === 'https:'
    const port = Number(url.port || (tls ? 443 : 80))
    const { caCerts } = this.#settings
    const connecting = tls
      ? this.#deno.connectTls({ hostname, port, alpnProtocols: ['http/1.1'], ...(caCerts ? { caCerts } : {}) })
      : this.#deno.connect({ hostname, port })
    let timer: ReturnType<typeof setTimeout> | undefined
    let stop: (() => void) | undefined
    const timeoutMs = this.#settings.connectTimeoutMs
    const gaveUp = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`connect timeout after ${timeoutMs} ms`)), timeoutMs)
      stop = () => reject(signal?.reason)
      signal?.addEventListener('abort', stop, { once: true })
    })
    try {
      const conn = await Promise.race([connecting, gaveUp])
      conn.setNoDelay?.(true)
      return new Connection(conn, url.origin)
    } catch (error) {
      // A connect that completes after the timeout or abort is closed, never used.
      connecting.then((conn) => conn.close(), noop)
      throw error
    } finally {
      clearTimeout(timer)
      if (stop !== undefined) signal?.removeEventListener('abort', stop)
    }
  }

  /** Back to the idle list for `idleMs`, or (0, closed pool, full list) closed. */
  release(connection: Connection, idleMs: number): void {
    if (connection.closed) return
    const idle = this.#idle.get(connection.origin) ?? []
    if (idleMs <= 0 || this.#closed || idle.length >= this.#settings.maxIdlePerOrigin) return connection.destroy()
    connection.reused = true
    idle.push(connection)
    this.#idle.set(connection.origin, idle)
    const timer = setTimeout(() => {
      const index = idle.indexOf(connection)
      if (index !== -1) idle.splice(index, 1)
      connection.destroy()
    }, idleMs)
    // Deno's setTimeout returns a number; typed as Node's Timeout here because @types/node is in the program.
    this.#deno.unrefTimer(timer as unknown as number)
    connection.idleTimer = timer
  }

  close(): void {
    this.#closed = true
    for (const idle of this.#idle.values()) for (const connection of idle.splice(0)) connection.destroy()
    this.#idle.clear()
  }
}

class StaleConnection extends Error {}

function caCertsOption(value: unknown): string[] | undefined {
  if (value === undefined) return undefined
  if (!Array.isArray(value) || !value.every((cert) => typeof cert === 'string')) {
    invalidOption('caCerts', 'an array of PEM strings', value)
  }
  return value
}

/** The idle time for a connection whose response had `head`: ours, or less than the server's Keep-Alive. */
function keepAliveMs(head: ResponseHead, ownMs: number): number {
  const advertised = /(?:^|[,;\s])timeout=(\d+)/i.exec(headerValues(head, 'keep-alive').join(','))
  if (advertised === null) return ownMs
  return Math.min(ownMs, Number(advertised[1]) * 1000 - KEEP_ALIVE_MARGIN_MS)
}

function hasToken(values: string[], token: string): boolean {
  return values.some((value) => value.split(',').some((part) => part.trim().toLowerCase() === token))
}

/** A gzip/deflate body a server sent although no accept-encoding asked for it, decoded as fetch would. */
function decompressed(body: ReadableStream<Uint8Array>, headers: Headers): ReadableStream<Uint8Array> {
  const coding = (headers.get('content-encoding') ?? 'identity').trim().toLowerCase()
  if (coding === 'identity' || coding === '') return body
  if (coding === 'gzip' || coding === 'x-gzip' || coding === 'deflate') {
    const decompress = new DecompressionStream(coding === 'deflate' ? 'deflate' : 'gzip')
    return body.pipeThrough(decompress as unknown as ReadableWritablePair<Uint8Array, Uint8Array>)
  }
  void body.cancel()
  throw new Error(`unsupported content-encoding ${JSON.stringify(coding)}`)
}

async function writeAll(conn: DenoConn, bytes: Uint8Array): Promise<void> {
  let written = 0
  while (written < bytes.byteLength) written += await conn.write(bytes.subarray(written))
}

/** The parts as one new array (they are views into a buffer the next read overwrites); undefined if empty. */
function copy(parts: Uint8Array[]): Uint8Array | undefined {
  if (parts.length === 1 && parts[0]!.byteLength > 0) return parts[0]!.slice()
  let length = 0
  for (const part of parts) length += part.byteLength
  return length === 0 ? undefined : concatBytes(parts, length)
}

function fetchFailed(cause: unknown): TypeError {
  return new TypeError('fetch failed', { cause })
}

/** As Deno's fetch names a body that failed mid-read. */
function bodyFailed(cause: unknown): TypeError {
  return new TypeError('error reading a body from connection', { cause })
}

function noop(): void {}

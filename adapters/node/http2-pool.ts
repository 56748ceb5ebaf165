/**
 * HTTP/2 to the upstream on undici 7.30's `Client`: many concurrent streams share a few connections, so N client
 * streams no longer need N upstream sockets (an HTTP/1.1 proxy holds 2N descriptors; bench/slow-streams.ts).
 * Over https the connection negotiates h2 by ALPN (`allowH2`); over http it speaks h2 with prior knowledge
 * (`useH2c`), which only an upstream that serves h2c understands (an HTTP/1.1 server answers the preface with a
 * 400 and closes, so every request fails rather than hangs).
 *
 * Why not undici's `Agent({ allowH2: true })`, measured with undici 7.30 against a node:http2 server:
 * - a `Pool` counts a client as busy while any request waits for its connection, so a burst of 200 requests opened
 *   200 connections before the first one was up; this pool fills a connection up to `STREAMS_PER_CONNECTION`
 *   requests (queued ones included, from the public `client.stats`) before it opens another;
 * - undici's h2 client holds a request that is not `idempotent` back while any other runs on the connection
 *   (client-h2.js `busy()`), and POST is not idempotent by default: one stream per connection again. The fetch
 *   marks its requests idempotent (see there); in undici 7.30 the flag is read by `busy()` only, it retries nothing.
 * @module
 */
import { buildConnector, Client } from 'undici'
import type { Dispatcher } from 'undici'

/**
 * Streams one connection carries. RFC 9113 §6.5.2 recommends that servers allow at least 100 (nginx 128, Node's
 * http2 server unlimited); the server's SETTINGS_MAX_CONCURRENT_STREAMS still caps it, but undici 7.30 does not
 * lower its own count to a smaller value: on Node 20.20 the streams above the server's limit wait on that
 * connection until one closes (a long SSE stream: minutes), or, sent before the SETTINGS arrived, are refused
 * (REFUSED_STREAM, a pre-first-byte failure the gateway retries). So no more than what servers commonly allow.
 * Also what undici announces to itself (`maxConcurrentStreams`) until the server's SETTINGS arrive.
 */
export const STREAMS_PER_CONNECTION = 100

export interface Http2PoolOptions {
  /** Connections per origin; null: as many as the streams need. */
  connections: number | null
  keepAliveTimeout: number
  connectTimeout: number
  /** Trusted certificates for TLS (Node's `ca`), or undefined for Node's default roots. */
  ca: string[] | undefined
}

/** The part of undici's dispatcher API the upstream fetch uses, over HTTP/2 connections. */
export interface Http2Pool {
  request(options: Dispatcher.RequestOptions): Promise<Dispatcher.ResponseData>
  close(): Promise<void>
}

export function createHttp2Pool(options: Http2PoolOptions): Http2Pool {
  const connect = h2Connector(options.connectTimeout, options.ca)
  const origins = new Map<string, Client[]>()
  let closed = false

  const newClient = (origin: string): Client =>
    new Client(origin, {
      connect,
      allowH2: true,
      // Streams at once per connection (undici reads `pipelining` for h2 too; its default, 1, is one stream).
      pipelining: STREAMS_PER_CONNECTION,
      maxConcurrentStreams: STREAMS_PER_CONNECTION,
      keepAliveTimeout: options.keepAliveTimeout,
      headersTimeout: 0,
      bodyTimeout: 0,
    })

  const pick = (origin: string): Client => {
    let clients = origins.get(origin)
    if (clients === undefined) origins.set(origin, (clients = []))
    const room = withRoom(clients)
    if (room !== undefined) return room
    if (options.connections === null || clients.length < options.connections) {
      const client = newClient(origin)
      clients.push(client)
      return client
    }
    // At the connection limit and all full: the least loaded one queues the request.
    return leastLoaded(clients)
  }

  return {
    request(requestOptions) {
      if (closed) return Promise.reject(new Error('the upstream fetch is closed'))
      return pick(String(requestOptions.origin)).request(requestOptions)
    },
    async close() {
      if (closed) throw new Error('the upstream fetch is already closed')
      closed = true
      await Promise.all([...origins.values()].flat().map((client) => client.close()))
    },
  }
}

function withRoom(clients: readonly Client[]): Client | undefined {
  for (const client of clients) if (client.stats.size < STREAMS_PER_CONNECTION) return client
  return undefined
}

function leastLoaded(clients: readonly Client[]): Client {
  let best = clients[0]!
  for (const client of clients) if (client.stats.size < best.stats.size) best = client
  return best
}

/**
 * undici's connector with h2 on: ALPN offers h2 over TLS, h2c with prior knowledge over TCP. A TLS upstream that
 * picks HTTP/1.1 is refused, not used: these clients send up to 100 requests at once per connection, which over
 * HTTP/1.1 is pipelining, and an SSE stream at the head of a pipeline holds every request behind it.
 */
function h2Connector(timeout: number, ca: string[] | undefined): buildConnector.connector {
  // `useH2c` is read by undici 7.30's lib/core/connect.js but missing from its types: not an object literal here.
  const h2: buildConnector.BuildOptions = Object.assign({ allowH2: true, timeout, ...(ca ? { ca } : {}) }, {
    useH2c: true,
  })
  const connect = buildConnector(h2)
  return (connectOptions, callback) => {
    connect(connectOptions, (error, socket) => {
      if (error !== null) return callback(error, null)
      // undici marks an h2c socket `alpnProtocol = 'h2'` itself; a TLS socket has what ALPN chose, or false.
      const protocol = (socket as { alpnProtocol?: string | false }).alpnProtocol
      if (protocol === 'h2') return callback(null, socket)
      socket.destroy()
      const reason = `the upstream did not negotiate HTTP/2 (ALPN: ${protocol || 'none'}); it needs \`http2: false\``
      callback(new Error(reason), null)
    })
  }
}

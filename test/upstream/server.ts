/**
 * A fault-injecting, OpenAI-compatible test upstream on `node:http` (loopback, random port). It honours
 * backpressure (awaits 'drain') and records every request with `sharedNow()` epoch-ms times, so a test in this
 * process or a bun/deno scenario in another can compare its own timestamps with what the upstream saw.
 *
 * Routes: `POST /v1/chat/completions` (`stream: true` → SSE of `chat.completion.chunk`; `stream: false` → a
 * `chat.completion` JSON), `GET /__upstream/requests[?id=…]` (the records as JSON, for other processes).
 * Behaviour per request comes from the `model` string; see ./behaviour.ts for every parameter.
 *
 * @example
 * const upstream = await startUpstream({ apiKey: 'sk-test' })
 * // POST `${upstream.url}/chat/completions` with model 'mock?id=r1&chunks=50&delay=20&stallAfter=3'
 * const record = await upstream.waitForClosed('r1') // record.closedAt, record.outcome === 'aborted'
 * await upstream.close()
 *
 * `http2: true` serves the same routes and behaviours over h2c (HTTP/2 with prior knowledge, node:http2's
 * compatibility API, so the same handler runs on its request/response), many streams per connection.
 * @module
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import {
  constants as http2Constants,
  createServer as createH2cServer,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type Http2Stream,
} from 'node:http2'
import type { Server, Socket } from 'node:net'
import { sharedNow } from '../../core/clock.ts'
import { BenchRecords, isPlain, writePlainStream } from './bench-mode.ts'
import { type Behaviour, expectedContent, parseBehaviour } from './behaviour.ts'
import { completionJson, DONE_EVENT, errorJson, sseEvent, streamEvents } from './openai-shapes.ts'

/** What the upstream saw and did for one HTTP request. Times are `sharedNow()` epoch milliseconds. */
export interface RequestRecord {
  id: string
  /** 1 for the first request with this id, 2 for its first retry, … */
  attempt: number
  method: string
  path: string
  model: string
  stream: boolean
  authorization: string | undefined
  headers: Record<string, string | string[] | undefined>
  body: string
  behaviour: Behaviour | undefined
  status: number | undefined
  startedAt: number
  headersAt: number | undefined
  firstByteAt: number | undefined
  bytesWritten: number
  /** Content deltas written (the role chunk, final chunk and [DONE] are not counted). */
  chunksWritten: number
  writes: number
  /** How many times a `write()` returned false and the upstream waited for 'drain'. */
  drainWaits: number
  /** Waiting for 'drain' right now. */
  paused: boolean
  /** When this request's client connection closed (the response's 'close'). */
  closedAt: number | undefined
  /** `completed`: the response was fully written; `aborted`: the connection closed first. */
  outcome: 'completed' | 'aborted' | undefined
}

export interface UpstreamOptions {
  /** When set, requests must carry `Authorization: Bearer <apiKey>`, else 401 with an OpenAI error body. */
  apiKey?: string
  /** Behaviour defaults under every request's `model` parameters. */
  defaults?: Partial<Behaviour>
  hostname?: string
  port?: number
  /**
   * Benchmark mode (./bench-mode.ts): plain streams from precomputed bytes, O(1) attempt counts, records without
   * headers/body and capped to the newest 20 000. Same routes and behaviours.
   */
  bench?: boolean
  /** Serve h2c (HTTP/2 over cleartext, prior knowledge) instead of HTTP/1.1. */
  http2?: boolean
}

/**
 * Streams one h2c connection may carry (SETTINGS_MAX_CONCURRENT_STREAMS). Stated rather than left to Node 20.20's
 * default (2^32 − 1) so that what bench/slow-streams.ts relies on — thousands of streams on a few connections —
 * is visible here.
 */
const H2_MAX_STREAMS = 100_000

export interface TestUpstream {
  /** Base URL including `/v1`, e.g. `http://127.0.0.1:41234/v1`. */
  url: string
  port: number
  requests: RequestRecord[]
  /** Every attempt with this id, in order. */
  attempts(id: string): RequestRecord[]
  /** Resolves with the first record of `id` (any attempt) for which `predicate` holds. */
  waitFor(id: string, predicate: (record: RequestRecord) => boolean, timeoutMs?: number): Promise<RequestRecord>
  /** Resolves when the last attempt of `id` so far has its connection closed. */
  waitForClosed(id: string, timeoutMs?: number): Promise<RequestRecord>
  /** Open TCP connections (idle keep-alive sockets included). */
  openConnections(): number
  /** TCP connections accepted since the start (closed ones included). */
  acceptedConnections(): number
  /** Requests whose response has not closed yet. */
  inFlight(): number
  waitForOpenConnections(count: number, timeoutMs?: number): Promise<void>
  waitForInFlight(count: number, timeoutMs?: number): Promise<void>
  close(): Promise<void>
}

const DEFAULT_WAIT_MS = 5_000

/** Starts the test upstream on a random loopback port. */
export async function startUpstream(options: UpstreamOptions = {}): Promise<TestUpstream> {
  const requests: RequestRecord[] = []
  const bench = options.bench === true ? new BenchRecords(requests) : undefined
  const sockets = new Set<Socket>()
  let accepted = 0
  const watchers = new Set<() => void>()
  const changed = (): void => {
    for (const watcher of [...watchers]) watcher()
  }

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    handle(req, res, { options, requests, changed, bench }).catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' })
      res.end(errorJson(500, `test upstream crashed: ${String(error)}`))
    })
  }
  const server: Server = options.http2 === true
    ? createH2cServer({ settings: { maxConcurrentStreams: H2_MAX_STREAMS } }, (req, res) => {
      onRequest(...asHttp1(req, res))
    })
    : createServer(onRequest)
  server.on('connection', (socket: Socket) => {
    sockets.add(socket)
    accepted++
    socket.on('close', () => {
      sockets.delete(socket)
      changed()
    })
    changed()
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    // A big backlog (capped by net.core.somaxconn): bench/slow-streams.ts opens thousands of connections at once.
    server.listen({ port: options.port ?? 0, host: options.hostname ?? '127.0.0.1', backlog: 65_535 }, () => resolve())
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('test upstream: no TCP address')

  function waitUntil<T>(check: () => T | undefined, timeoutMs: number, what: () => string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const cleanup = (): void => {
        clearTimeout(timer)
        watchers.delete(watcher)
      }
      const watcher = (): void => {
        const value = check()
        if (value === undefined) return
        cleanup()
        resolve(value)
      }
      const timer = setTimeout(() => {
        cleanup()
        reject(new Error(`test upstream: timed out after ${timeoutMs} ms waiting for ${what()}`))
      }, timeoutMs)
      watchers.add(watcher)
      watcher()
    })
  }
  const attempts = (id: string): RequestRecord[] => requests.filter((record) => record.id === id)
  const summary = (id: string): string =>
    JSON.stringify(attempts(id).map(({ body: _body, headers: _h, ...rest }) => rest))
  const inFlight = (): number => requests.filter((record) => record.closedAt === undefined).length

  return {
    url: `http://${address.address}:${address.port}/v1`,
    port: address.port,
    requests,
    attempts,
    waitFor: (id, predicate, timeoutMs = DEFAULT_WAIT_MS) =>
      waitUntil(() => attempts(id).find(predicate), timeoutMs, () => `request ${id}: ${summary(id)}`),
    waitForClosed: (id, timeoutMs = DEFAULT_WAIT_MS) =>
      waitUntil(
        () => {
          const last = attempts(id).at(-1)
          return last?.closedAt === undefined ? undefined : last
        },
        timeoutMs,
        () => `request ${id} to close: ${summary(id)}`,
      ),
    openConnections: () => sockets.size,
    acceptedConnections: () => accepted,
    inFlight,
    waitForOpenConnections: (count, timeoutMs = DEFAULT_WAIT_MS) =>
      waitUntil(
        () => (sockets.size === count ? true : undefined),
        timeoutMs,
        () => `${count} connections, have ${sockets.size}`,
      ).then(noop),
    waitForInFlight: (count, timeoutMs = DEFAULT_WAIT_MS) =>
      waitUntil(
        () => (inFlight() === count ? true : undefined),
        timeoutMs,
        () => `${count} in flight, have ${inFlight()}`,
      ).then(noop),
    close: async () => {
      // node:http2's server has no closeAllConnections(): its sessions end with their sockets.
      if ('closeAllConnections' in server) (server as ReturnType<typeof createServer>).closeAllConnections()
      else for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

interface Context {
  options: UpstreamOptions
  requests: RequestRecord[]
  changed: () => void
  bench: BenchRecords | undefined
}

/**
 * node:http2's compatibility request/response as node:http's types, so one handler serves both. What the handler
 * uses exists on both in Node 20.20 (writeHead, flushHeaders — missing from @types/node 20 only —, write returning
 * false then 'drain', end, 'close', headersSent, writableFinished); `destroyed` is undefined on the h2 response,
 * so there the closed signal alone stops writing; cut() tells h2 apart by its `stream`.
 */
function asHttp1(req: Http2ServerRequest, res: Http2ServerResponse): [IncomingMessage, ServerResponse] {
  return [req as unknown as IncomingMessage, res as unknown as ServerResponse]
}

async function handle(req: IncomingMessage, res: ServerResponse, context: Context): Promise<void> {
  const { options, requests, changed, bench } = context
  const url = new URL(req.url ?? '/', 'http://upstream.invalid')
  if (req.method === 'GET' && url.pathname === '/__upstream/requests') {
    const id = url.searchParams.get('id')
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify(id === null ? requests : requests.filter((record) => record.id === id)))
    return
  }
  if (req.method !== 'POST' || url.pathname !== '/v1/chat/completions') {
    res.writeHead(404, { 'content-type': 'application/json' })
    res.end(errorJson(404, `Unknown route ${req.method} ${url.pathname}`, 'unknown_url'))
    return
  }
  const startedAt = sharedNow()
  const body = await readBody(req)
  let payload: { model?: unknown; stream?: unknown } = {}
  let behaviour: Behaviour | undefined
  let problem: string | undefined
  try {
    payload = JSON.parse(body) as typeof payload
    behaviour = parseBehaviour(payload.model, options.defaults)
  } catch (error) {
    problem = error instanceof Error ? error.message : String(error)
  }
  const id = behaviour?.id ?? 'invalid'
  const record: RequestRecord = {
    id,
    attempt: bench ? bench.nextAttempt(id) : requests.filter((r) => r.id === id).length + 1,
    method: req.method,
    path: url.pathname,
    model: typeof payload.model === 'string' ? payload.model : '',
    stream: payload.stream === true,
    authorization: req.headers.authorization,
    headers: bench ? {} : { ...req.headers },
    body: bench ? '' : body,
    behaviour,
    status: undefined,
    startedAt,
    headersAt: undefined,
    firstByteAt: undefined,
    bytesWritten: 0,
    chunksWritten: 0,
    writes: 0,
    drainWaits: 0,
    paused: false,
    closedAt: undefined,
    outcome: undefined,
  }
  if (bench) bench.add(record)
  else requests.push(record)
  const closed = new AbortController()
  res.on('close', () => {
    record.closedAt = sharedNow()
    // node:http2's response reports writableFinished once its stream is closed, reset or not (Node 20.20);
    // writableEnded tells whether the handler got to end() (on node:http, finished implies ended).
    record.outcome = res.writableFinished && res.writableEnded ? 'completed' : 'aborted'
    record.paused = false
    closed.abort()
    changed()
  })
  changed()

  const respondError = (
    status: number,
    message: string,
    code: string | null,
    headers: Record<string, string> = {},
  ): void => {
    record.status = status
    record.headersAt = sharedNow()
    res.writeHead(status, { 'content-type': 'application/json', ...headers })
    res.end(errorJson(status, message, code))
  }
  if (options.apiKey !== undefined && req.headers.authorization !== `Bearer ${options.apiKey}`) {
    respondError(401, 'Incorrect API key provided.', 'invalid_api_key')
    return
  }
  if (behaviour === undefined) {
    respondError(400, `Invalid request: ${problem ?? 'unknown'}`, 'invalid_request')
    return
  }
  const io = new ResponseWriter(res, record, closed.signal, changed)
  if (!(await io.pause(behaviour.headerDelay))) return
  if (behaviour.fail !== undefined && record.attempt <= behaviour.failTimes) {
    respondError(
      behaviour.fail,
      `Mock failure ${behaviour.fail} on attempt ${record.attempt}`,
      `mock_${behaviour.fail}`,
      retryHeaders(behaviour),
    )
    return
  }
  if (bench && record.stream && isPlain(behaviour)) await writePlainStream(res, record, behaviour, closed.signal)
  else if (record.stream) await streamResponse(io, behaviour, record.model)
  else await bufferedResponse(io, behaviour, record.model)
}

function retryHeaders(behaviour: Behaviour): Record<string, string> {
  const headers: Record<string, string> = {}
  if (behaviour.retryAfter !== undefined) headers['retry-after'] = behaviour.retryAfter
  if (behaviour.retryAfterDate !== undefined) {
    headers['retry-after'] = new Date(Date.now() + behaviour.retryAfterDate * 1000).toUTCString()
  }
  if (behaviour.retryAfterMs !== undefined) headers['retry-after-ms'] = String(behaviour.retryAfterMs)
  return headers
}

async function streamResponse(io: ResponseWriter, behaviour: Behaviour, model: string): Promise<void> {
  io.head(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    'x-request-id': behaviour.id,
  })
  if (!(await io.pause(behaviour.ttft))) return
  if (behaviour.cutBeforeBody !== undefined && io.record.attempt <= behaviour.cutBeforeBody) {
    io.cut()
    return
  }
  const events = streamEvents(behaviour, model)
  const batch: Uint8Array[] = []
  // Writes queued events once `eventsPerWrite` of them are waiting (or when forced), with `delay` between writes.
  // Every write after the first waits `delay`, half events included, so each lands in its own socket read.
  const spaced = async (bytes: Uint8Array): Promise<boolean> => {
    if (io.record.writes > 0 && !(await io.pause(behaviour.delay))) return false
    return io.write(bytes)
  }
  const flush = async (force: boolean): Promise<boolean> => {
    if (batch.length === 0 || (!force && batch.length < behaviour.eventsPerWrite)) return true
    return spaced(concat(batch.splice(0)))
  }
  const queue = async (bytes: Uint8Array): Promise<boolean> => {
    batch.push(bytes)
    return flush(false)
  }
  if (!(await queue(events.role))) return
  for (let index = 0; index <= behaviour.chunks; index++) {
    const next = index < behaviour.chunks ? events.content(index) : events.final
    let nextHalfWritten = false
    if (behaviour.cutAfter === index || behaviour.stallAfter === index) {
      if (!(await flush(true))) return
      if (behaviour.midEvent) {
        if (!(await spaced(next.subarray(0, next.byteLength >> 1)))) return
        nextHalfWritten = true
      }
      if (behaviour.cutAfter === index) {
        io.cut()
        return
      }
      if (!(await io.pause(behaviour.stallMs ?? Number.POSITIVE_INFINITY))) return
    }
    if (behaviour.malformedAfter === index && !(await queue(new TextEncoder().encode('data: {not json\n\n')))) return
    if (behaviour.errorEvent === index) {
      const error = {
        error: { message: 'Mock upstream error event', type: 'server_error', param: null, code: 'mock_error' },
      }
      if (!(await queue(sseEvent(error))) || !(await flush(true))) return
      io.res.end()
      return
    }
    if (nextHalfWritten) {
      if (!(await flush(true)) || !(await spaced(next.subarray(next.byteLength >> 1)))) return
    } else if (!(await queue(next))) return
    if (index < behaviour.chunks) io.record.chunksWritten++
  }
  if (!behaviour.noDone && !(await queue(DONE_EVENT))) return
  if (!(await flush(true))) return
  io.res.end()
}

async function bufferedResponse(io: ResponseWriter, behaviour: Behaviour, model: string): Promise<void> {
  const json = new TextEncoder().encode(
    completionJson(behaviour, model, expectedContent(behaviour.chunks, behaviour.pad, behaviour.hugeEvent)),
  )
  io.head(200, {
    'content-type': 'application/json',
    'content-length': String(json.byteLength),
    'x-request-id': behaviour.id,
  })
  if (!(await io.pause(behaviour.ttft))) return
  if (behaviour.cutAfter !== undefined) {
    await io.write(json.subarray(0, json.byteLength >> 1))
    io.cut()
    return
  }
  if (!(await io.write(json))) return
  io.res.end()
}

/** Writes with backpressure and bookkeeping; every wait ends early (returning false) when the client leaves. */
class ResponseWriter {
  readonly res: ServerResponse
  readonly record: RequestRecord
  readonly #closed: AbortSignal
  readonly #changed: () => void

  constructor(res: ServerResponse, record: RequestRecord, closed: AbortSignal, changed: () => void) {
    this.res = res
    this.record = record
    this.#closed = closed
    this.#changed = changed
  }

  head(status: number, headers: Record<string, string>): void {
    this.record.status = status
    this.res.writeHead(status, headers)
    // Headers go out before the first body byte, as a real LLM API does while the model thinks.
    this.res.flushHeaders()
    this.record.headersAt = sharedNow()
    this.#changed()
  }

  /**
   * Drops the connection mid-response, after what was already written reached the kernel: a bare `destroy()`
   * would discard queued writes, so the client would never see the k chunks before the cut.
   */
  cut(): void {
    const h2 = (this.res as { stream?: Http2Stream }).stream
    if (h2 !== undefined) return cutStream(h2)
    const socket = this.res.socket
    if (!socket) return
    socket.end(() => socket.destroy())
  }

  /** Waits `ms` (Infinity: until the client leaves). Resolves false if the client left. */
  pause(ms: number): Promise<boolean> {
    if (this.#closed.aborted) return Promise.resolve(false)
    if (ms <= 0) return Promise.resolve(true)
    return new Promise<boolean>((resolve) => {
      const timer = Number.isFinite(ms) ? setTimeout(() => done(true), ms) : undefined
      const onClose = (): void => done(false)
      const done = (open: boolean): void => {
        clearTimeout(timer)
        this.#closed.removeEventListener('abort', onClose)
        resolve(open)
      }
      this.#closed.addEventListener('abort', onClose, { once: true })
    })
  }

  /** Writes `bytes`; when the socket buffer is full, waits for 'drain' (or close). Resolves false if closed. */
  async write(bytes: Uint8Array): Promise<boolean> {
    if (this.#closed.aborted || this.res.destroyed) return false
    this.record.firstByteAt ??= sharedNow()
    this.record.bytesWritten += bytes.byteLength
    this.record.writes++
    const flowing = this.res.write(bytes)
    this.#changed()
    if (flowing) return true
    this.record.drainWaits++
    this.record.paused = true
    this.#changed()
    await new Promise<void>((resolve) => {
      const done = (): void => {
        this.res.off('drain', done)
        this.#closed.removeEventListener('abort', done)
        resolve()
      }
      this.res.on('drain', done)
      this.#closed.addEventListener('abort', done, { once: true })
    })
    this.record.paused = false
    this.#changed()
    return !this.#closed.aborted
  }
}

/**
 * The h2 cut: only this stream ends, with RST_STREAM (INTERNAL_ERROR), as a server failing one request would; the
 * connection and its other streams go on. After the write queue has reached nghttp2 (an empty write's callback),
 * though nghttp2 may still send the reset ahead of DATA it holds: on h2 the bytes before a cut are best effort.
 */
function cutStream(stream: Http2Stream): void {
  stream.write(new Uint8Array(0), () => stream.close(http2Constants.NGHTTP2_INTERNAL_ERROR))
}

async function readBody(req: IncomingMessage): Promise<string> {
  const parts: Buffer[] = []
  for await (const part of req) parts.push(part as Buffer)
  return Buffer.concat(parts).toString('utf8')
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!
  return Buffer.concat(parts)
}

function noop(): void {}

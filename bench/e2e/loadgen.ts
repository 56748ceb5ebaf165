/**
 * The SSE load generator: C concurrent OpenAI-style streaming POSTs, N in total, with a wall-clock cap, counting
 * events per stream and timing each one. It drives undici's `Pool` through `dispatch()` with a raw handler (no
 * Readable, no fetch, no promise per chunk) and one connection per concurrent stream, because at C=1000 the
 * client must cost far less per chunk than the gateway it measures (see shared/research/runtimes.md §5).
 * @module
 */
import { Pool } from 'undici'
import type { Dispatcher } from 'undici'
import { sharedNow } from '../../core/clock.ts'
import type { DisconnectDelays } from './disconnect-delays.ts'
import { assertLoopbackUrl } from './loopback.ts'
import { distribution } from './percentiles.ts'
import type { Distribution } from './percentiles.ts'
import { idleRss, startRssSampler } from './rss-sampler.ts'
import { SseCounter } from './sse-counter.ts'

export interface LoadOptions {
  /** The target, e.g. http://127.0.0.1:8080 (loopback only). Only its origin is used: `path` is the route. */
  url: string
  /** Default /v1/chat/completions. */
  path?: string
  concurrency: number
  requests: number
  /** Wall-clock cap: streams still running then are aborted and counted as unfinished. */
  maxSeconds: number
  /** The `model` field; `{i}` is replaced by the request's index (so an upstream log can tell requests apart). */
  model?: string
  /** pid of the target process, to sample its RSS (Linux /proc). */
  targetPid?: number
  rssIntervalMs?: number
  /** Disconnect mode: each client aborts its stream right after receiving this many data events. */
  disconnectAfterEvents?: number
  /** Time allowed for response headers, and between two body chunks. Default 30 s. */
  timeoutMs?: number
  /**
   * Streams run first and not measured (same concurrency, capped at this number), so the target's JIT and
   * connection pools are warm and its idle RSS is read after them, not straight after startup.
   */
  warmupRequests?: number
  /** Model string of the warmup streams (default: `model`), e.g. without the upstream's inter-token delay. */
  warmupModel?: string
}

export const ERROR_KINDS = ['connect', 'http', 'timeout', 'errorEvent', 'truncated'] as const
export type ErrorKind = (typeof ERROR_KINDS)[number]

export interface ClientDisconnect {
  index: number
  /** Epoch ms (sharedNow) just before the client aborted: comparable with another process's timestamps. */
  abortedAt: number
}

export interface LoadReport {
  url: string
  concurrency: number
  requested: number
  started: number
  /** Streams that ended with [DONE] and no error. */
  completed: number
  /** Streams aborted on purpose in disconnect mode. */
  disconnected: number
  /** Streams still running at the wall-clock cap (aborted then; not errors). */
  unfinished: number
  stoppedByCap: boolean
  wallSeconds: number
  requestsPerSecond: number
  /** Data events (not [DONE]) received over all streams, per wall second. */
  eventsPerSecond: number
  events: number
  /** Data events per completed stream. */
  eventsPerStream: { min: number; max: number }
  /** Time to first event: dispatch → first complete `data:` line, ms. */
  ttfeMs: Distribution
  /** Stream duration of completed streams: dispatch → end of body, ms. */
  durationMs: Distribution
  errors: Record<ErrorKind, number>
  /** Count per HTTP status for the `http` errors. */
  httpStatuses: Record<string, number>
  /** First message seen per error kind, to tell what went wrong without a debugger. */
  errorSamples: Partial<Record<ErrorKind, string>>
  rss?: RssReport
  disconnects: ClientDisconnect[]
  /** Client abort → upstream connection close, ms (disconnect mode, when upstream records were read). */
  disconnectDelayMs?: DisconnectDelays
}

export interface RssReport {
  pid: number
  idleBytes: number
  peakBytes: number
  /** min(C, N): the streams open at the same time at the peak. */
  activeStreams: number
  /** (peak − idle) / activeStreams. */
  perActiveStreamBytes: number
}

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT'])

/** Why we aborted a stream ourselves; never counted as an error. */
class PlannedAbort extends Error {}
const CAP_REACHED = 'wall-clock cap'

export function classifyFailure(error: unknown, responseStarted: boolean): ErrorKind {
  const code = (error as { code?: unknown } | null)?.code
  if (typeof code === 'string' && TIMEOUT_CODES.has(code)) return 'timeout'
  // Before response headers nothing streamed: the connection (or the server behind it) failed.
  if (!responseStarted) return 'connect'
  // After headers, a reset or early close means the stream was cut short.
  return 'truncated'
}

/** What one batch of streams over a pool produced; `runLoad` turns it into a report. */
interface DriveResult {
  started: number
  finished: number
  completed: number
  disconnected: number
  stoppedByCap: boolean
  wallSeconds: number
  events: number
  minEvents: number
  maxEvents: number
  ttfe: number[]
  durations: number[]
  errors: Record<ErrorKind, number>
  errorSamples: Partial<Record<ErrorKind, string>>
  httpStatuses: Record<string, number>
  disconnects: ClientDisconnect[]
}

interface DriveOptions {
  path: string
  concurrency: number
  requests: number
  maxSeconds: number
  model: string
  timeoutMs: number
  disconnectAfterEvents: number | undefined
}

export async function runLoad(options: LoadOptions): Promise<LoadReport> {
  const base = assertLoopbackUrl(options.url)
  const concurrency = Math.max(1, Math.floor(options.concurrency))
  const requested = Math.max(0, Math.floor(options.requests))
  const drive: DriveOptions = {
    path: options.path ?? '/v1/chat/completions',
    concurrency,
    requests: requested,
    maxSeconds: options.maxSeconds,
    model: options.model ?? 'mock',
    timeoutMs: options.timeoutMs ?? 30_000,
    disconnectAfterEvents: options.disconnectAfterEvents,
  }
  const pool = new Pool(base.origin, {
    connections: concurrency,
    pipelining: 1,
    connectTimeout: drive.timeoutMs,
    keepAliveTimeout: 60_000,
  })
  try {
    const warmup = Math.floor(options.warmupRequests ?? 0)
    if (warmup > 0) {
      // Same pool, so its connections (up to C, if warmup ≥ C) are open and kept alive when measuring starts:
      // the measured TTFE is then the target's, not a storm of C simultaneous TCP handshakes overflowing a
      // listen backlog (SYN retries add whole seconds).
      await driveStreams(pool, {
        ...drive,
        requests: warmup,
        // Distinct ids, so upstream records of the warmup never match a measured request.
        model: (options.warmupModel ?? drive.model).replaceAll('{i}', 'warmup-{i}'),
        disconnectAfterEvents: undefined,
      })
      await new Promise((resolve) => setTimeout(resolve, 200)) // let garbage and closing streams settle
    }
    const idleBytes = options.targetPid === undefined ? Number.NaN : await idleRss(options.targetPid)
    const sampler =
      options.targetPid === undefined ? undefined : startRssSampler(options.targetPid, options.rssIntervalMs)
    const result = await driveStreams(pool, drive)
    sampler?.stop()
    const report: LoadReport = {
      url: base.origin + drive.path,
      concurrency,
      requested,
      started: result.started,
      completed: result.completed,
      disconnected: result.disconnected,
      unfinished: result.started - result.finished,
      stoppedByCap: result.stoppedByCap,
      wallSeconds: result.wallSeconds,
      requestsPerSecond: result.completed / result.wallSeconds,
      eventsPerSecond: result.events / result.wallSeconds,
      events: result.events,
      eventsPerStream: { min: result.completed === 0 ? 0 : result.minEvents, max: result.maxEvents },
      ttfeMs: distribution(result.ttfe),
      durationMs: distribution(result.durations),
      errors: result.errors,
      httpStatuses: result.httpStatuses,
      errorSamples: result.errorSamples,
      disconnects: result.disconnects,
    }
    if (sampler && options.targetPid !== undefined) {
      const activeStreams = Math.min(concurrency, requested)
      report.rss = {
        pid: options.targetPid,
        idleBytes,
        peakBytes: sampler.peak,
        activeStreams,
        perActiveStreamBytes: (sampler.peak - idleBytes) / activeStreams,
      }
    }
    return report
  } finally {
    await pool.destroy().catch(() => {})
  }
}

/**
 * Keeps `concurrency` streams in flight until `requests` have run or the wall-clock cap, with callbacks only:
 * each finished stream launches the next from inside undici's handler.
 */
function driveStreams(pool: Pool, options: DriveOptions): Promise<DriveResult> {
  const { requests, concurrency, disconnectAfterEvents } = options
  const perRequestModel = options.model.includes('{i}')
  const bodyFor = (index: number): string =>
    JSON.stringify({
      model: perRequestModel ? options.model.replaceAll('{i}', String(index)) : options.model,
      stream: true,
      messages: [{ role: 'user', content: 'Say something.' }],
    })
  const sharedBody = perRequestModel ? undefined : bodyFor(0)
  const result: DriveResult = {
    started: 0,
    finished: 0,
    completed: 0,
    disconnected: 0,
    stoppedByCap: false,
    wallSeconds: 0,
    events: 0,
    minEvents: Number.POSITIVE_INFINITY,
    maxEvents: 0,
    ttfe: [],
    durations: [],
    errors: { connect: 0, http: 0, timeout: 0, errorEvent: 0, truncated: 0 },
    errorSamples: {},
    httpStatuses: {},
    disconnects: [],
  }
  const inFlight = new Set<Dispatcher.DispatchController>()
  const startedAt = performance.now()
  let lastEnd = 0
  let stopped = false

  return new Promise<DriveResult>((resolve) => {
    let cap: ReturnType<typeof setTimeout> | undefined
    const finish = (): void => {
      clearTimeout(cap)
      result.wallSeconds = ((lastEnd || performance.now()) - startedAt) / 1000
      resolve(result)
    }
    const fail = (kind: ErrorKind, message: string): void => {
      result.errors[kind]++
      result.errorSamples[kind] ??= message
    }
    const httpError = (status: number): void => {
      result.httpStatuses[status] = (result.httpStatuses[status] ?? 0) + 1
      fail('http', `HTTP ${status}`)
    }

    const launch = (): void => {
      if (stopped) return
      if (result.started >= requests) {
        if (result.finished === result.started) finish()
        return
      }
      const index = result.started++
      const counter = new SseCounter()
      const dispatchedAt = performance.now()
      let controller: Dispatcher.DispatchController | undefined
      let status = 0
      let responseStarted = false
      let settled = false

      const settle = (): void => {
        if (settled) return
        settled = true
        if (controller) inFlight.delete(controller)
        result.events += counter.events
        if (stopped) return // cut by the cap: unfinished, and the result is already out
        result.finished++
        lastEnd = performance.now()
        launch()
      }

      const handler: Dispatcher.DispatchHandler = {
        onRequestStart(requestController) {
          controller = requestController
          if (stopped) requestController.abort(new PlannedAbort(CAP_REACHED))
          else inFlight.add(requestController)
        },
        onResponseStart(_controller, statusCode) {
          responseStarted = true
          status = statusCode
        },
        onResponseData(dataController, chunk) {
          if (status !== 200) return // an error body: drained by undici, not parsed as SSE
          const hadEvents = counter.events > 0
          counter.push(chunk)
          if (!hadEvents && counter.events > 0) result.ttfe.push(performance.now() - dispatchedAt)
          const leaveNow = disconnectAfterEvents !== undefined && counter.events >= disconnectAfterEvents
          if (leaveNow && !dataController.aborted) {
            result.disconnects.push({ index, abortedAt: sharedNow() })
            result.disconnected++
            dataController.abort(new PlannedAbort('disconnect mode'))
          }
        },
        onResponseEnd() {
          if (stopped) {
            // cut by the cap
          } else if (status !== 200) {
            httpError(status)
          } else if (counter.errorEvents > 0) {
            fail('errorEvent', `error event in the stream: ${counter.firstErrorData ?? '(event: error)'}`)
          } else if (!counter.done) {
            fail('truncated', `body ended after ${counter.events} events without [DONE]`)
          } else {
            result.completed++
            result.durations.push(performance.now() - dispatchedAt)
            if (counter.events < result.minEvents) result.minEvents = counter.events
            if (counter.events > result.maxEvents) result.maxEvents = counter.events
          }
          settle()
        },
        onResponseError(_controller, error) {
          if (error instanceof PlannedAbort || stopped) {
            // disconnect mode or the cap: the outcome is already recorded
          } else if (status !== 0 && status !== 200) {
            httpError(status)
          } else if (counter.errorEvents > 0) {
            fail('errorEvent', `error event in the stream: ${counter.firstErrorData ?? '(event: error)'}`)
          } else {
            const code = (error as { code?: string }).code
            fail(classifyFailure(error, responseStarted), `${code ?? error.name}: ${error.message}`)
          }
          settle()
        },
      }

      pool.dispatch(
        {
          path: options.path,
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
          body: sharedBody ?? bodyFor(index),
          headersTimeout: options.timeoutMs,
          bodyTimeout: options.timeoutMs,
        },
        handler,
      )
    }

    // At the cap, stop launching, abort what runs and report at once: a stream stuck before its socket connects
    // (not yet abortable through a controller) must not hold the benchmark past its wall-clock budget.
    cap = setTimeout(() => {
      stopped = true
      result.stoppedByCap = true
      lastEnd = performance.now()
      for (const inflight of inFlight) inflight.abort(new PlannedAbort(CAP_REACHED))
      finish()
    }, options.maxSeconds * 1000)
    if (requests === 0) finish()
    for (let i = 0; i < Math.min(concurrency, requests); i++) launch()
  })
}

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
  /** Base URL of the target, e.g. http://127.0.0.1:8080 (loopback only). */
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

export async function runLoad(options: LoadOptions): Promise<LoadReport> {
  const base = assertLoopbackUrl(options.url)
  const path = options.path ?? '/v1/chat/completions'
  const concurrency = Math.max(1, Math.floor(options.concurrency))
  const requested = Math.max(0, Math.floor(options.requests))
  const timeoutMs = options.timeoutMs ?? 30_000
  const modelTemplate = options.model ?? 'mock'
  const perRequestModel = modelTemplate.includes('{i}')
  const bodyFor = (index: number): string =>
    JSON.stringify({
      model: perRequestModel ? modelTemplate.replaceAll('{i}', String(index)) : modelTemplate,
      stream: true,
      messages: [{ role: 'user', content: 'Say something.' }],
    })
  const sharedBody = perRequestModel ? undefined : bodyFor(0)

  const pool = new Pool(base.origin, {
    connections: concurrency,
    pipelining: 1,
    connectTimeout: timeoutMs,
    keepAliveTimeout: 60_000,
  })

  if (options.warmupRequests !== undefined && options.warmupRequests > 0) {
    await runLoad({
      ...options,
      requests: options.warmupRequests,
      // Distinct ids, so upstream records of the warmup never match a measured request.
      model: (options.warmupModel ?? modelTemplate).replaceAll('{i}', 'warmup-{i}'),
      targetPid: undefined,
      disconnectAfterEvents: undefined,
      warmupRequests: 0,
    })
    await new Promise((resolve) => setTimeout(resolve, 200)) // let closed connections and garbage settle
  }

  let idleBytes = Number.NaN
  if (options.targetPid !== undefined) idleBytes = await idleRss(options.targetPid)
  const sampler =
    options.targetPid === undefined ? undefined : startRssSampler(options.targetPid, options.rssIntervalMs)

  const ttfe = new Float64Array(requested)
  const durations = new Float64Array(requested)
  let ttfeCount = 0
  let durationCount = 0
  const errors: Record<ErrorKind, number> = { connect: 0, http: 0, timeout: 0, errorEvent: 0, truncated: 0 }
  const errorSamples: Partial<Record<ErrorKind, string>> = {}
  const httpStatuses: Record<string, number> = {}
  const disconnects: ClientDisconnect[] = []
  const inFlight = new Set<Dispatcher.DispatchController>()
  let started = 0
  /** Streams with an outcome: completed, disconnected on purpose, or failed. */
  let finished = 0
  let completed = 0
  let disconnected = 0
  let events = 0
  let minEvents = Number.POSITIVE_INFINITY
  let maxEvents = 0
  let stopped = false
  let stoppedByCap = false
  let lastEnd = 0

  let resolveAll = (): void => {}
  const startedAt = performance.now()
  const allDone = new Promise<void>((resolve) => {
    resolveAll = resolve
    const fail = (kind: ErrorKind, message: string): void => {
      errors[kind]++
      errorSamples[kind] ??= message
    }

    const launch = (): void => {
      if (stopped || started >= requested) {
        if (finished === started) resolveAll()
        return
      }
      const index = started++
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
        events += counter.events
        if (stoppedByCap) return // counted as unfinished; the report is already being written
        finished++
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
          if (!hadEvents && counter.events > 0 && ttfeCount < requested) {
            ttfe[ttfeCount++] = performance.now() - dispatchedAt
          }
          const limit = options.disconnectAfterEvents
          if (limit !== undefined && counter.events >= limit && !dataController.aborted) {
            disconnects.push({ index, abortedAt: sharedNow() })
            disconnected++
            dataController.abort(new PlannedAbort('disconnect mode'))
          }
        },
        onResponseEnd() {
          if (stoppedByCap) {
            settle()
          } else if (status !== 200) {
            httpStatuses[status] = (httpStatuses[status] ?? 0) + 1
            fail('http', `HTTP ${status}`)
          } else if (counter.errorEvents > 0) {
            fail('errorEvent', 'error event in the stream')
          } else if (!counter.done) {
            fail('truncated', `body ended after ${counter.events} events without [DONE]`)
          } else {
            completed++
            durations[durationCount++] = performance.now() - dispatchedAt
            if (counter.events < minEvents) minEvents = counter.events
            if (counter.events > maxEvents) maxEvents = counter.events
          }
          settle()
        },
        onResponseError(_controller, error) {
          if (error instanceof PlannedAbort || stoppedByCap) {
            // disconnect mode or the cap: the outcome is already recorded
          } else if (status !== 0 && status !== 200) {
            httpStatuses[status] = (httpStatuses[status] ?? 0) + 1
            fail('http', `HTTP ${status}`)
          } else if (counter.errorEvents > 0) {
            fail('errorEvent', 'error event in the stream')
          } else {
            const code = (error as { code?: string }).code
            fail(classifyFailure(error, responseStarted), `${code ?? error.name}: ${error.message}`)
          }
          settle()
        },
      }

      pool.dispatch(
        {
          path,
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
          body: sharedBody ?? bodyFor(index),
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs,
        },
        handler,
      )
    }

    if (requested === 0) resolveAll()
    for (let i = 0; i < Math.min(concurrency, requested); i++) launch()
  })

  // At the cap, stop launching, abort what runs and report at once: a stream stuck before its socket connects
  // (not yet abortable through a controller) must not hold the benchmark past its wall-clock budget.
  const cap = setTimeout(() => {
    stopped = true
    stoppedByCap = true
    lastEnd = performance.now()
    for (const controller of inFlight) controller.abort(new PlannedAbort(CAP_REACHED))
    resolveAll()
  }, options.maxSeconds * 1000)
  try {
    await allDone
  } finally {
    clearTimeout(cap)
    sampler?.stop()
    await pool.destroy().catch(() => {})
  }

  const wallSeconds = ((lastEnd || performance.now()) - startedAt) / 1000
  const activeStreams = Math.min(concurrency, requested)
  const report: LoadReport = {
    url: base.origin + path,
    concurrency,
    requested,
    started,
    completed,
    disconnected,
    unfinished: started - finished,
    stoppedByCap,
    wallSeconds,
    requestsPerSecond: completed / wallSeconds,
    eventsPerSecond: events / wallSeconds,
    events,
    eventsPerStream: { min: completed === 0 ? 0 : minEvents, max: maxEvents },
    ttfeMs: distribution(Array.from(ttfe.subarray(0, ttfeCount))),
    durationMs: distribution(Array.from(durations.subarray(0, durationCount))),
    errors,
    httpStatuses,
    errorSamples,
    disconnects,
  }
  if (sampler && options.targetPid !== undefined) {
    report.rss = {
      pid: options.targetPid,
      idleBytes,
      peakBytes: sampler.peak,
      activeStreams,
      perActiveStreamBytes: (sampler.peak - idleBytes) / activeStreams,
    }
  }
  return report
}

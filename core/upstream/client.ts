/**
 * The streaming call: `createUpstreamClient()` puts concurrency slots, a queue timeout, retries before the first
 * byte, an idle timeout, cancellation, backpressure and telemetry around fetch() to an OpenAI-compatible upstream.
 * @module
 */
import type { Emitter } from 'nanoevents'
import { onAbort } from '../abort.ts'
import type { CallKind, StreamEvents, StreamEventSink } from '../telemetry/events.ts'
import { createLifecycleEmitter } from '../telemetry/event-emitter.ts'
import { createStreamTelemetry } from '../telemetry/stream-telemetry.ts'
import { durationMs, invalidOption, nonNegativeInteger } from '../validate.ts'
import { Attempts, type AttemptSettings, type Connection } from './attempt.ts'
import { CallTracker } from './call-tracker.ts'
import { UpstreamMalformedError, UpstreamTimeoutError, UpstreamTruncatedError } from './errors.ts'
import { type ResolvedOptions, resolveOptions, type UpstreamClientOptions } from './options.ts'
import { forwardSse, isEventStream } from './sse-forwarder.ts'
import type { CallOptions, UpstreamRequest } from './types.ts'
import { UsageCounter } from './usage.ts'

export interface UpstreamClient {
  /**
   * Starts a streaming call. Resolves as soon as the upstream answered: with a 200 `text/event-stream` Response
   * whose body forwards the upstream events (permits held until its last byte), or with the upstream's own
   * status and body for an answer that is not retried (a 400, 401, 404…). Rejects before any byte with an error
   * carrying `status` (and `retryAfterMs`): QueueTimeoutError 503, UpstreamConnectError 502,
   * UpstreamStatusError 429/502/503/504 after the last attempt — or with the signal's reason.
   */
  stream(request: UpstreamRequest, options?: CallOptions): Promise<Response>
  /**
   * A buffered (non-streaming) call under the same limits with its own weight, the same retries and a total
   * timeout. Resolves with the upstream's status, headers and whole body once read and the permits released.
   */
  complete(request: UpstreamRequest, options?: CallOptions): Promise<Response>
  /** Lifecycle events: `client.events.on('end', (event) => …)`. */
  readonly events: Emitter<StreamEvents>
  /** Calls in flight: queued, connecting or streaming, until their last byte. */
  readonly active: number
}

// Not forwarded to our caller: hop-by-hop headers (RFC 9110 §7.6.1), and the framing fetch already undid.
const DROPPED_HEADERS = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'content-length',
  'content-encoding',
  'upgrade',
  'proxy-connection',
  'trailer',
  'te',
])

let nextCallId = 0
const callIdPrefix = Math.random().toString(36).slice(2, 8)

/**
 * Creates an upstream client.
 * @example
 * ```ts
 * const semaphore = new SharedSemaphore({ capacity: 64 })
 * const client = createUpstreamClient({ semaphore, streamWeight: 3, queueTimeoutMs: 5_000, idleTimeoutMs: 30_000 })
 * const response = await client.stream(
 *   { url: 'https://api.openai.com/v1/chat/completions', headers, body: JSON.stringify({ ...chat, stream: true }) },
 *   { signal: request.signal },
 * )
 * ```
 */
export function createUpstreamClient(options: UpstreamClientOptions): UpstreamClient {
  const settings = resolveOptions(options)
  const { sink, events } = resolveTelemetry(options.telemetry)
  let active = 0
  const streamAttempts = attemptSettings(settings, 'stream')
  const bufferedAttempts = attemptSettings(settings, 'buffered')

  const begin = (kind: CallKind, request: UpstreamRequest, callOptions: CallOptions): Call => {
    checkRequest(request)
    checkResume(callOptions.resume)
    const id = callOptions.id ?? `${callIdPrefix}-${++nextCallId}`
    active++
    return new Call(kind, id, callOptions, sink, () => active--)
  }

  async function stream(request: UpstreamRequest, callOptions: CallOptions = {}): Promise<Response> {
    const call = begin('stream', request, callOptions)
    const attempts = new Attempts(streamAttempts, request, call.tracker, call.signal)
    let connection: Connection | undefined
    try {
      connection = await attempts.connect()
      const { response } = connection
      if (response.ok && isEventStream(response)) {
        connection.disarm()
        const body = forwardSse({
          connection,
          attempts,
          tracker: call.tracker,
          settings,
          call: call.controller,
          clientSignal: callOptions.signal,
          request,
        })
        return new Response(body, {
          status: 200,
          headers: forwardedHeaders(response.headers, 'text/event-stream; charset=utf-8'),
        })
      }
      if (response.ok) {
        const type = response.headers.get('content-type') ?? 'no content type'
        throw new UpstreamMalformedError(`The upstream answered a stream with ${type}, not text/event-stream`)
      }
      // An answer that is not retried (4xx other than 429, other statuses): the caller gets it as it is.
      const bytes = await connection.readBody()
      call.tracker.bytes += bytes.byteLength
      connection.close()
      call.end('completed', response.status)
      return new Response(bytes, { status: response.status, headers: forwardedHeaders(response.headers) })
    } catch (error) {
      connection?.abort(error)
      connection?.close()
      call.reject(error)
      throw error
    }
  }

  async function complete(request: UpstreamRequest, callOptions: CallOptions = {}): Promise<Response> {
    const call = begin('buffered', request, callOptions)
    const attempts = new Attempts(bufferedAttempts, request, call.tracker, call.signal)
    const total = setTimeout(
      () => call.controller.abort(new UpstreamTimeoutError(settings.totalTimeoutMs)),
      Math.max(0, settings.totalTimeoutMs - call.tracker.sinceStartMs),
    )
    try {
      for (;;) {
        const connection = await attempts.connect()
        connection.disarm()
        try {
          const bytes = await connection.readBody()
          call.tracker.bytes += bytes.byteLength
          const { status, headers } = connection.response
          call.tracker.usage = bufferedUsage(bytes, headers)
          connection.close()
          call.end('completed', status)
          return new Response(bytes, { status, headers: forwardedHeaders(headers) })
        } catch (error) {
          connection.abort(error)
          connection.close()
          if (call.signal.aborted) throw call.signal.reason
          // Nothing was returned yet, so a body lost halfway is retried like a failed connect.
          await attempts.backoff(
            new UpstreamTruncatedError('The upstream connection was lost before the body ended', { cause: error }),
          )
        }
      }
    } catch (error) {
      call.reject(error)
      throw error
    } finally {
      clearTimeout(total)
    }
  }

  return {
    stream,
    complete,
    events,
    get active() {
      return active
    },
  }
}

/**
 * One call's signal and tracker. The call signal aborts when the client leaves, on shutdown, or on a buffered
 * call's total timeout; everything the call waits on (limiters, fetch, backoff) listens to it.
 */
class Call {
  readonly controller = new AbortController()
  readonly tracker: CallTracker
  readonly #clientSignal: AbortSignal | undefined
  readonly #unlink: (() => void)[]

  constructor(kind: CallKind, id: string, options: CallOptions, sink: StreamEventSink, onEnd: () => void) {
    this.#clientSignal = options.signal
    this.tracker = new CallTracker(id, kind, sink, () => {
      for (const unlink of this.#unlink) unlink()
      onEnd()
    }, options.resume)
    const abort = (reason: unknown): void => this.controller.abort(reason)
    this.#unlink = [onAbort(options.signal, abort), onShutdown(options.shutdownSignal, abort)]
  }

  get signal(): AbortSignal {
    return this.controller.signal
  }

  end(outcome: 'completed', status: number): void {
    this.tracker.end(outcome, status)
  }

  /** Failed before any byte: a client that left is a disconnect, anything else an error. */
  reject(error: unknown): void {
    if (this.tracker.ended) return
    if (this.#clientSignal?.aborted) {
      this.tracker.disconnected()
      this.tracker.end('disconnect', undefined)
      return
    }
    this.tracker.failed(error)
    const status = (error as { status?: unknown } | null)?.status
    this.tracker.end('error', typeof status === 'number' ? status : undefined)
  }
}

/**
 * Calls of one shutdown signal, so that the signal has ONE listener however many calls are live: a listener per
 * call on a server-wide signal made Node print "MaxListenersExceededWarning: Possible EventTarget memory leak"
 * from the 11th concurrent stream on, although every listener was removed when its call ended.
 */
const shutdownFanOut = new WeakMap<AbortSignal, Set<(reason: unknown) => void>>()

/** Exported for the worker pool, whose main-side calls listen to the same shutdown signals. */
export function onShutdown(signal: AbortSignal | undefined, abort: (reason: unknown) => void): () => void {
  if (!signal || signal.aborted) return onAbort(signal, abort)
  let calls = shutdownFanOut.get(signal)
  if (!calls) {
    const live = new Set<(reason: unknown) => void>()
    calls = live
    shutdownFanOut.set(signal, live)
    onAbort(signal, (reason) => {
      for (const call of [...live]) call(reason)
    })
  }
  const registered = calls
  registered.add(abort)
  return () => void registered.delete(abort)
}

function attemptSettings(settings: ResolvedOptions, kind: CallKind): AttemptSettings {
  const buffered = kind === 'buffered'
  return {
    fetch: settings.fetch,
    permits: buffered ? settings.bufferedSemaphore : settings.semaphore,
    weight: buffered ? settings.bufferedWeight : settings.streamWeight,
    rateLimiter: settings.rateLimiter,
    rateLimitCost: settings.rateLimitCost,
    retry: settings.retry,
    queueTimeoutMs: settings.queueTimeoutMs,
    queueRetryAfterMs: settings.queueRetryAfterMs,
  }
}

/** A telemetry option as a sink plus the emitter `events` exposes. Exported for the worker pool (same option). */
export function resolveTelemetry(
  telemetry: UpstreamClientOptions['telemetry'],
): { sink: StreamEventSink; events: Emitter<StreamEvents> } {
  if (typeof telemetry === 'function') {
    // A bare sink (a worker posting to the main thread): no metrics here, but local listeners still get events.
    const local = createLifecycleEmitter()
    return {
      sink: (event) => {
        telemetry(event)
        local.emit(event)
      },
      events: local.events,
    }
  }
  if (
    telemetry !== undefined &&
    (typeof telemetry !== 'object' || telemetry === null || typeof telemetry.record !== 'function')
  ) {
    invalidOption('telemetry', 'a StreamTelemetry or a function', telemetry)
  }
  const resolved = telemetry ?? createStreamTelemetry()
  return { sink: (event) => resolved.record(event), events: resolved.events }
}

/** Validates `CallOptions.resume`. Exported for the worker pool, which checks it before dispatching. */
export function checkResume(resume: CallOptions['resume']): void {
  if (resume === undefined) return
  if (typeof resume !== 'object' || resume === null) invalidOption('resume', 'an object', resume)
  nonNegativeInteger('resume.attempts', resume.attempts)
  durationMs('resume.elapsedMs', resume.elapsedMs, { allowZero: true })
}

/** Validates a request once, at the call. Exported for the worker pool, which checks it before dispatching. */
export function checkRequest(request: UpstreamRequest): void {
  if (typeof request !== 'object' || request === null) invalidOption('request', 'an object', request)
  let url: URL | undefined
  try {
    url = new URL(request.url)
  } catch {}
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    invalidOption('request.url', 'an absolute http(s) URL', request.url)
  }
  if (request.body !== undefined && typeof request.body !== 'string') {
    invalidOption('request.body', 'a string', request.body)
  }
}

/** Above this a buffered body is not parsed for its usage (an API answer with usage is far smaller). */
const USAGE_PARSE_LIMIT = 4 * 1024 * 1024

/**
 * The usage of a buffered answer: the upstream's own `usage` object of a JSON body (a chat completion), else
 * none. Not counted from the content as for streams: without deltas there is nothing to count per token.
 */
function bufferedUsage(bytes: ArrayBuffer, headers: Headers): UsageCounter | undefined {
  if (bytes.byteLength > USAGE_PARSE_LIMIT || !(headers.get('content-type') ?? '').includes('json')) return undefined
  let json: unknown
  try {
    json = JSON.parse(new TextDecoder().decode(bytes))
  } catch {
    return undefined
  }
  const usage = (json as { usage?: { completion_tokens?: unknown } } | null)?.usage
  if (typeof usage?.completion_tokens !== 'number') return undefined
  const counter = new UsageCounter()
  counter.observe(json)
  return counter
}

function forwardedHeaders(upstream: Headers, contentType?: string): Headers {
  const headers = new Headers()
  upstream.forEach((value, name) => {
    if (!DROPPED_HEADERS.has(name)) headers.set(name, value)
  })
  if (contentType) headers.set('content-type', contentType)
  return headers
}

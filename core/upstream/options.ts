/**
 * Options of `createUpstreamClient()`, validated once with the project's message shape.
 * @module
 */
import { durationMs, invalidOption, positiveInteger } from '../validate.ts'
import type { StreamEventSink } from '../telemetry/events.ts'
import type { StreamTelemetry } from '../telemetry/stream-telemetry.ts'
import { resolveRetryPolicy, type RetryOptions, type RetryPolicy } from './retry-policy.ts'
import type { UpstreamEventHook } from './sse-forwarder.ts'
import type { TransformFactory } from './transform.ts'
import type { PermitSource, TokenSource } from './types.ts'

export interface UpstreamClientOptions {
  /** Permits for streams (and for buffered calls unless `bufferedSemaphore` is set). */
  semaphore: PermitSource
  /** Permits a stream holds from acquire to its last byte. Default 1. */
  streamWeight?: number
  /** Permits a buffered call holds until its body is read. Default 1. */
  bufferedWeight?: number
  /** A separate semaphore for buffered calls. Default: `semaphore`. */
  bufferedSemaphore?: PermitSource
  /** Charged once per attempt, before the semaphore. */
  rateLimiter?: TokenSource
  /** Tokens per attempt. Default 1. */
  rateLimitCost?: number
  /**
   * Budget for everything before the upstream's response headers: rate limiter, semaphore, connecting, headers
   * and backoff sleeps between attempts. Never covers the body. Default 5000 ms.
   */
  queueTimeoutMs?: number
  /** `retryAfterMs` of a QueueTimeoutError when no limiter suggested one. Default 1000 ms. */
  queueRetryAfterMs?: number
  /**
   * Longest gap between upstream chunks while we wait for them (reset by each chunk; never a total timeout).
   * 0 disables it. Default 60000 ms.
   */
  idleTimeoutMs?: number
  /** Total timeout of a buffered call (queueing included). Default 120000 ms. */
  totalTimeoutMs?: number
  /** Send `: keep-alive` comments this often while the upstream is quiet. 0 (default) disables. */
  heartbeatMs?: number
  /** Largest unterminated event held back while waiting for its end. Default 8 MiB. */
  maxEventBytes?: number
  retry?: RetryOptions
  /** Called for every upstream data event before it is forwarded; throwing ends the stream with an error event. */
  onEvent?: UpstreamEventHook
  /**
   * Makes each stream's transform, which may rewrite or drop upstream events (contract: ./transform.ts). The
   * stream runner loads it from a module (`createStreamRunner({ transform: path })`), in each worker thread.
   */
  transform?: TransformFactory
  /**
   * Where lifecycle events go: a StreamTelemetry (metrics + nanoevents), or a bare sink function (e.g. a worker
   * posting events to the main thread). Default: `createStreamTelemetry()` on the global meter provider.
   */
  telemetry?: StreamTelemetry | StreamEventSink
  /** The fetch to use. Default: the global `fetch`. */
  fetch?: typeof fetch
}

export interface ResolvedOptions {
  semaphore: PermitSource
  bufferedSemaphore: PermitSource
  streamWeight: number
  bufferedWeight: number
  rateLimiter: TokenSource | undefined
  rateLimitCost: number
  queueTimeoutMs: number
  queueRetryAfterMs: number
  idleTimeoutMs: number
  totalTimeoutMs: number
  heartbeatMs: number
  maxEventBytes: number
  retry: RetryPolicy
  onEvent: UpstreamEventHook | undefined
  transform: TransformFactory | undefined
  fetch: typeof fetch
}

export function resolveOptions(options: UpstreamClientOptions): ResolvedOptions {
  if (typeof options !== 'object' || options === null) invalidOption('options', 'an object', options)
  const semaphore = limiter('semaphore', options.semaphore)
  if (semaphore === undefined) invalidOption('semaphore', 'an object with an acquire() method', options.semaphore)
  const fetchImpl = options.fetch ?? ((input, init) => globalThis.fetch(input, init))
  if (typeof fetchImpl !== 'function') invalidOption('fetch', 'a function', fetchImpl)
  if (options.onEvent !== undefined && typeof options.onEvent !== 'function') {
    invalidOption('onEvent', 'a function', options.onEvent)
  }
  if (options.transform !== undefined && typeof options.transform !== 'function') {
    invalidOption('transform', 'a function (a transform factory)', options.transform)
  }
  return {
    semaphore,
    bufferedSemaphore: limiter('bufferedSemaphore', options.bufferedSemaphore) ?? semaphore,
    streamWeight: positiveInteger('streamWeight', options.streamWeight ?? 1),
    bufferedWeight: positiveInteger('bufferedWeight', options.bufferedWeight ?? 1),
    rateLimiter: limiter('rateLimiter', options.rateLimiter),
    rateLimitCost: positiveInteger('rateLimitCost', options.rateLimitCost ?? 1),
    queueTimeoutMs: durationMs('queueTimeoutMs', options.queueTimeoutMs ?? 5_000),
    queueRetryAfterMs: durationMs('queueRetryAfterMs', options.queueRetryAfterMs ?? 1_000, { allowZero: true }),
    idleTimeoutMs: durationMs('idleTimeoutMs', options.idleTimeoutMs ?? 60_000, { allowZero: true }),
    totalTimeoutMs: durationMs('totalTimeoutMs', options.totalTimeoutMs ?? 120_000),
    heartbeatMs: durationMs('heartbeatMs', options.heartbeatMs ?? 0, { allowZero: true }),
    maxEventBytes: positiveInteger('maxEventBytes', options.maxEventBytes ?? 8 * 1024 * 1024),
    retry: resolveRetryPolicy(options.retry),
    onEvent: options.onEvent,
    transform: options.transform,
    fetch: fetchImpl,
  }
}

function limiter<T extends PermitSource | TokenSource>(name: string, value: T | undefined): T | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'object' || value === null || typeof (value as { acquire?: unknown }).acquire !== 'function') {
    invalidOption(name, 'an object with an acquire() method', value)
  }
  return value
}

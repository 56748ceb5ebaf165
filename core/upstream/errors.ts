/**
 * Errors of the streaming call. Each carries the HTTP `status` a gateway should answer with when it happens
 * before any byte reached the client (queue timeout 503, unreachable upstream 502, …) and, where it makes
 * sense, `retryAfterMs` for a `Retry-After` header. After the first byte they become an SSE error event
 * instead (see ./sse-error-event.ts); `retryable` says whether the retry policy may try again.
 * @module
 */
import { SluiceError, type SluiceErrorCode, TimeoutError } from '../errors.ts'

/** Fields every upstream-call error exposes, whatever its class. */
export interface UpstreamCallError {
  readonly code: SluiceErrorCode
  readonly status: number
  readonly retryAfterMs: number | undefined
  /** The retry policy may try again (only ever before the first byte is forwarded). */
  readonly retryable: boolean
}

/**
 * Waiting for the rate limiter, permits, the connection and the response headers took longer than
 * `queueTimeoutMs` — or the semaphore's wait queue was full (`cause` is then its QueueFullError): for the
 * gateway both mean "no slot in time, come back later".
 */
export class QueueTimeoutError extends TimeoutError implements UpstreamCallError {
  readonly status = 503
  readonly retryAfterMs: number
  readonly retryable = false
  constructor(timeoutMs: number, retryAfterMs: number, options?: { cause?: unknown; message?: string }) {
    super(
      options?.message ?? `No upstream response within the queue timeout of ${timeoutMs} ms`,
      timeoutMs,
      'ERR_QUEUE_TIMEOUT',
    )
    this.retryAfterMs = retryAfterMs
    if (options?.cause !== undefined) this.cause = options.cause
  }
}

/** The upstream could not be reached (DNS, refused, reset before the response headers). */
export class UpstreamConnectError extends SluiceError implements UpstreamCallError {
  readonly status = 502
  readonly retryAfterMs = undefined
  readonly retryable = true
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_UPSTREAM_CONNECT', message, options)
  }
}

/**
 * The upstream answered a retryable status (429, 500, 502, 503, 504) on the last attempt allowed.
 * `status` maps it for the gateway: 429, 503 and 504 pass through, 500 and 502 become 502 (the fault is upstream).
 */
export class UpstreamStatusError extends SluiceError implements UpstreamCallError {
  readonly status: number
  readonly upstreamStatus: number
  readonly retryAfterMs: number | undefined
  readonly retryable = true
  /** The upstream's error body (truncated), for logs; never forwarded as is. */
  readonly body: string
  constructor(upstreamStatus: number, retryAfterMs: number | undefined, body: string) {
    super('ERR_UPSTREAM_STATUS', `Upstream answered ${upstreamStatus}${body ? `: ${body.slice(0, 200)}` : ''}`)
    this.upstreamStatus = upstreamStatus
    this.status = upstreamStatus === 429 || upstreamStatus === 503 || upstreamStatus === 504 ? upstreamStatus : 502
    this.retryAfterMs = retryAfterMs
    this.body = body
  }
}

/** No upstream bytes for `idleTimeoutMs` while we were waiting for them. */
export class IdleTimeoutError extends TimeoutError implements UpstreamCallError {
  readonly status = 504
  readonly retryAfterMs = undefined
  readonly retryable = true
  constructor(timeoutMs: number) {
    super(`No upstream data for ${timeoutMs} ms`, timeoutMs, 'ERR_IDLE_TIMEOUT')
  }
}

/** A buffered call did not finish within `totalTimeoutMs`. */
export class UpstreamTimeoutError extends TimeoutError implements UpstreamCallError {
  readonly status = 504
  readonly retryAfterMs = undefined
  readonly retryable = false
  constructor(timeoutMs: number) {
    super(`The upstream call did not finish within ${timeoutMs} ms`, timeoutMs, 'ERR_TIMEOUT')
  }
}

/** The upstream body ended (EOF or lost connection) before `data: [DONE]`. */
export class UpstreamTruncatedError extends SluiceError implements UpstreamCallError {
  readonly status = 502
  readonly retryAfterMs = undefined
  readonly retryable = true
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_UPSTREAM_TRUNCATED', message, options)
  }
}

/** The upstream sent an event whose data is neither JSON nor `[DONE]`, or an event larger than `maxEventBytes`. */
export class UpstreamMalformedError extends SluiceError implements UpstreamCallError {
  readonly status = 502
  readonly retryAfterMs = undefined
  readonly retryable = false
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_UPSTREAM_MALFORMED', message, options)
  }
}

/** Reads `retryable` off anything; only our own upstream errors are ever retried. */
export function isRetryable(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as Partial<UpstreamCallError>).retryable === true
}

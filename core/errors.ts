/**
 * Error classes of sluice. Each has a stable `code` discriminant (like eventsource-parser's `ParseError.type`)
 * so callers can branch without `instanceof` across realms or threads, where classes do not survive cloning.
 * @module
 */

/** Every sluice error code. */
export type SluiceErrorCode =
  | 'ERR_TIMEOUT'
  | 'ERR_QUEUE_TIMEOUT'
  | 'ERR_IDLE_TIMEOUT'
  | 'ERR_RATE_LIMIT_TIMEOUT'
  | 'ERR_UPSTREAM'
  | 'ERR_UPSTREAM_CONNECT'
  | 'ERR_UPSTREAM_STATUS'
  | 'ERR_UPSTREAM_TRUNCATED'
  | 'ERR_UPSTREAM_MALFORMED'
  | 'ERR_WORKER_CRASHED'
  | 'ERR_CLOSED'
  | 'ERR_QUEUE_FULL'

/** Base class: `name` is the subclass name, `code` the discriminant. */
export class SluiceError extends Error {
  readonly code: SluiceErrorCode
  constructor(code: SluiceErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = new.target.name
    this.code = code
  }
}

/** A wait (semaphore, rate limiter) did not finish within its `timeoutMs`. */
export class TimeoutError extends SluiceError {
  readonly timeoutMs: number
  constructor(message: string, timeoutMs: number, code: SluiceErrorCode = 'ERR_TIMEOUT') {
    super(code, message)
    this.timeoutMs = timeoutMs
  }
}

/**
 * A rate limiter's wait would exceed the caller's `timeoutMs`: decided when the wait is computed, not after
 * sleeping. `retryAfterMs` is the wait the bucket computed (a `Retry-After` for a 429).
 */
export class RateLimitTimeoutError extends TimeoutError {
  readonly retryAfterMs: number
  constructor(message: string, timeoutMs: number, retryAfterMs: number) {
    super(message, timeoutMs, 'ERR_RATE_LIMIT_TIMEOUT')
    this.retryAfterMs = retryAfterMs
  }
}

/** A wait queue (the semaphore's tickets) already holds its maximum of waiters: `maxWaiting`. */
export class QueueFullError extends SluiceError {
  readonly maxWaiting: number
  constructor(message: string, maxWaiting: number) {
    super('ERR_QUEUE_FULL', message)
    this.maxWaiting = maxWaiting
  }
}

/**
 * Acquire, connect, retry: everything before the first byte. One `Attempts` per call owns the queue deadline.
 *
 * Queue-timeout budget: `queueTimeoutMs` covers everything until the upstream's response headers — rate-limit
 * wait, permit wait, connecting, waiting for headers, AND the backoff sleeps between attempts. So no sequence of
 * retries can push the time to first byte past it: a retry whose delay would end past the deadline is not made,
 * and the last failure is reported instead. Permits are released before each backoff sleep and acquired again
 * (the rate limiter is charged per attempt), so a sleeping retry blocks nobody.
 * @module
 */
import { onAbort, sleep } from '../abort.ts'
import { monotonicNow } from '../clock.ts'
import { TimeoutError } from '../errors.ts'
import type { CallTracker } from './call-tracker.ts'
import { isRetryable, QueueTimeoutError, UpstreamConnectError, UpstreamStatusError } from './errors.ts'
import { isRetryableStatus, parseRetryAfter, retryDelayMs, type RetryPolicy } from './retry-policy.ts'
import type { Permit, PermitSource, TokenSource, UpstreamRequest } from './types.ts'

/** What every attempt of one kind of call (stream or buffered) needs. */
export interface AttemptSettings {
  fetch: typeof fetch
  permits: PermitSource
  weight: number
  rateLimiter: TokenSource | undefined
  rateLimitCost: number
  retry: RetryPolicy
  queueTimeoutMs: number
  /** The `retryAfterMs` hint of a QueueTimeoutError when no limiter gave a better one. */
  queueRetryAfterMs: number
}

const ERROR_BODY_LIMIT = 8 * 1024

/** A response whose headers arrived, with the permits its attempt holds. */
export class Connection {
  readonly response: Response
  /** Aborting it aborts this attempt's fetch and its body. */
  readonly controller: AbortController
  #release: (() => void) | undefined
  #unlink: () => void
  #deadlineTimer: ReturnType<typeof setTimeout> | undefined

  constructor(
    response: Response,
    controller: AbortController,
    release: () => void,
    unlink: () => void,
    timer: ReturnType<typeof setTimeout>,
  ) {
    this.response = response
    this.controller = controller
    this.#release = release
    this.#unlink = unlink
    this.#deadlineTimer = timer
  }

  /** The headers are in and the body is ours: the queue deadline stops applying. */
  disarm(): void {
    clearTimeout(this.#deadlineTimer)
  }

  /** Aborts the upstream request (fetch and body) with `reason`. */
  abort(reason: unknown): void {
    this.controller.abort(reason)
  }

  /** Releases the permits (exactly once) and stops following the call's signal. Idempotent. */
  close(): void {
    clearTimeout(this.#deadlineTimer)
    this.#unlink()
    const release = this.#release
    this.#release = undefined
    release?.()
  }

  /** Reads the whole body; a lost connection rejects with the abort reason if the attempt was aborted. */
  async readBody(): Promise<ArrayBuffer> {
    try {
      return await this.response.arrayBuffer()
    } catch (error) {
      if (this.controller.signal.aborted) throw this.controller.signal.reason
      throw error
    }
  }
}

export class Attempts {
  readonly #settings: AttemptSettings
  readonly #request: UpstreamRequest
  readonly #tracker: CallTracker
  readonly #signal: AbortSignal
  readonly #deadline: number

  /** `signal` is the call's: the client leaving, shutdown, or a total timeout. */
  constructor(settings: AttemptSettings, request: UpstreamRequest, tracker: CallTracker, signal: AbortSignal) {
    this.#settings = settings
    this.#request = request
    this.#tracker = tracker
    this.#signal = signal
    // From the call's start: a resumed call (CallOptions.resume) has only what is left of its budget.
    this.#deadline = monotonicNow() - tracker.sinceStartMs + settings.queueTimeoutMs
  }

  /** Attempts until an answer that is not retried; resolves once its headers arrived, permits held. */
  async connect(): Promise<Connection> {
    for (;;) {
      try {
        return await this.#attempt()
      } catch (error) {
        await this.backoff(error)
      }
    }
  }

  /** After `failure` (before the first byte), retries: waits for the backoff, then `connect()`s again. */
  async reconnect(failure: unknown): Promise<Connection> {
    await this.backoff(failure)
    return this.connect()
  }

  /** Sleeps before the next attempt, or rethrows `failure` if none may follow (not retryable, count, budget). */
  async backoff(failure: unknown): Promise<void> {
    if (this.#signal.aborted) throw this.#signal.reason
    if (!isRetryable(failure) || this.#tracker.attempts >= this.#settings.retry.maxAttempts) throw failure
    const hint = (failure as { retryAfterMs?: number }).retryAfterMs
    const delayMs = retryDelayMs(this.#settings.retry, this.#tracker.attempts, hint)
    if (monotonicNow() + delayMs >= this.#deadline) throw failure
    this.#tracker.retry(delayMs, failure)
    await sleep(delayMs, this.#signal)
  }

  #remaining(): number {
    return this.#deadline - monotonicNow()
  }

  #queueTimeout(cause?: unknown, retryAfterMs?: number): QueueTimeoutError {
    return new QueueTimeoutError(this.#settings.queueTimeoutMs, retryAfterMs ?? this.#settings.queueRetryAfterMs, {
      cause,
    })
  }

  async #attempt(): Promise<Connection> {
    const { fetch, permits, weight, rateLimiter, rateLimitCost } = this.#settings
    this.#tracker.attempts++
    const waitStarted = monotonicNow()
    if (rateLimiter) await this.#acquire(() => rateLimiter.acquire(rateLimitCost, this.#acquireOptions()))
    const permit: Permit = await this.#acquire(() => permits.acquire(weight, this.#acquireOptions()))
    this.#tracker.acquired(monotonicNow() - waitStarted)

    let released = false
    const release = (): void => {
      if (released) return
      released = true
      permit.release()
    }
    const controller = new AbortController()
    const unlink = onAbort(this.#signal, (reason) => controller.abort(reason))
    // The headers must arrive within what is left of the queue budget.
    const timer = setTimeout(() => controller.abort(this.#queueTimeout()), Math.max(0, this.#remaining()))
    try {
      const { url, method = 'POST', headers, body } = this.#request
      // redirect 'error': an API call is never redirected on purpose (and 'follow' would turn a POST into a GET
      // on 301/302, or resend the key on 307/308). It is also cheaper: Node 20's fetch clones any other request,
      // teeing its body into two more web streams (about 50 µs of CPU per call, cloneRequest in --cpu-prof).
      const response = await fetch(url, { method, headers, body, signal: controller.signal, redirect: 'error' })
      if (isRetryableStatus(response.status)) {
        const text = await readErrorBody(response)
        throw new UpstreamStatusError(response.status, parseRetryAfter(response.headers), text)
      }
      return new Connection(response, controller, release, unlink, timer)
    } catch (error) {
      clearTimeout(timer)
      unlink()
      release()
      if (controller.signal.aborted) throw controller.signal.reason
      if (error instanceof UpstreamStatusError) throw error
      throw new UpstreamConnectError(`The upstream is unreachable: ${describe(error)}`, { cause: error })
    }
  }

  #acquireOptions(): { signal: AbortSignal; timeoutMs: number } {
    const remaining = this.#remaining()
    if (remaining <= 0) throw this.#queueTimeout()
    return { signal: this.#signal, timeoutMs: Math.ceil(remaining) }
  }

  /** Runs a limiter's acquire; its timeout (or our spent budget) becomes a QueueTimeoutError. */
  async #acquire<T>(acquire: () => Promise<T>): Promise<T> {
    try {
      return await acquire()
    } catch (error) {
      if (this.#signal.aborted) throw this.#signal.reason
      if (error instanceof QueueTimeoutError) throw error
      if ((error as { code?: unknown } | null)?.code === 'ERR_QUEUE_FULL') {
        const message = `The upstream wait queue is full: ${(error as Error).message}`
        throw new QueueTimeoutError(this.#settings.queueTimeoutMs, this.#settings.queueRetryAfterMs, {
          cause: error,
          message,
        })
      }
      if (isLimiterTimeout(error) || this.#remaining() <= 0) {
        const hint = (error as { retryAfterMs?: unknown }).retryAfterMs
        throw this.#queueTimeout(error, typeof hint === 'number' ? hint : undefined)
      }
      throw error
    }
  }
}

function isLimiterTimeout(error: unknown): boolean {
  if (error instanceof TimeoutError) return true
  const code = (error as { code?: unknown } | null)?.code
  return code === 'ERR_TIMEOUT' || code === 'ERR_RATE_LIMIT_TIMEOUT' || (error as Error | null)?.name === 'TimeoutError'
}

/** Reads at most ERROR_BODY_LIMIT bytes of an error body, for the error message; the rest is cancelled. */
async function readErrorBody(response: Response): Promise<string> {
  if (!response.body) return ''
  const reader = response.body.getReader()
  const decoder = new TextDecoder()
  let text = ''
  for (;;) {
    const { done, value } = await reader.read()
    if (done) return text + decoder.decode()
    text += decoder.decode(value, { stream: true })
    if (text.length >= ERROR_BODY_LIMIT) {
      await reader.cancel().catch(() => {})
      return text.slice(0, ERROR_BODY_LIMIT)
    }
  }
}

function describe(error: unknown): string {
  const cause = (error as { cause?: { code?: unknown; message?: unknown } } | null)?.cause
  const detail = typeof cause?.code === 'string'
    ? cause.code
    : typeof cause?.message === 'string'
    ? cause.message
    : undefined
  const message = error instanceof Error ? error.message : String(error)
  return detail ? `${message} (${detail})` : message
}

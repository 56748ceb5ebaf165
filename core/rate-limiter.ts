/**
 * A rate limiter shared by every thread: the cross-thread equivalent of Python aiolimiter's
 * `AsyncLimiter(max_rate, time_period)` (mjpieters/aiolimiter `src/aiolimiter/leakybucket.py`, a leaky bucket),
 * written as GCRA on 64-bit words in a SharedArrayBuffer updated by compare-and-swap. No lock, no broker thread:
 * `postMessage` the `handle` anywhere and `SharedRateLimiter.from(handle)` sees the same bucket.
 *
 * Two words, two jobs:
 * - QUEUE_TAT orders waiters. `acquire()` books its slot there first (FIFO by reservation: the booking order is
 *   the arrival order across all threads), then sleeps on a plain timer until the slot is due. No polling.
 * - ADMIT_TAT is the limit itself. When a waiter's slot is due it books on ADMIT_TAT with "admissible now" or
 *   nothing, so every admission passes the exact GCRA test at the instant it happens. Due times alone are not
 *   enough: a thread whose event loop stalls (long synchronous work, a GC pause, being descheduled) wakes with
 *   every reservation that fell due meanwhile, while the other threads kept admitting on time; releasing them all
 *   at once would exceed the burst. The exact check spaces them out again (test: "an event-loop stall").
 *
 * Giving back a cancelled reservation (abort or deadline) subtracts the still-future part of its slot from
 * QUEUE_TAT, so the next arrivals are due earlier; waiters already asleep keep their due time. This can never
 * over-admit, because admission is decided on ADMIT_TAT alone, which a cancelled reservation never touched. If a
 * give-back ever lets QUEUE_TAT predict too early, the ADMIT_TAT check makes that waiter sleep the difference.
 * @module
 */
import { onAbort } from './abort.ts'
import { book, freeTokens, giveBack } from './_gcra-word.ts'
import { sharedNow } from './clock.ts'
import { RateLimitTimeoutError } from './errors.ts'
import { durationMs, invalidOption, optionalSignal, positiveInteger } from './validate.ts'

/*
 * SharedArrayBuffer layout. The config slots are written once, before the buffer is shared (postMessage orders
 * those writes before any read in the receiving thread), so they are read without Atomics.
 */
const QUEUE_TAT = 0 // BigInt64: reservations' theoretical arrival time, integer µs since EPOCH_MS
const ADMIT_TAT = 1 // BigInt64: admissions' theoretical arrival time, integer µs since EPOCH_MS
const LAYOUT_TAG = 2 // BigInt64: LAYOUT_MAGIC, so `from()` rejects some other SharedArrayBuffer
const WORD_COUNT = 3
const EPOCH_MS = 0 // Float64: sharedNow() when the limiter was created
const RATE = 1 // Float64
const PER_MS = 2 // Float64
const CONFIG_COUNT = 3
const BYTE_LENGTH = (WORD_COUNT + CONFIG_COUNT) * 8
const LAYOUT_MAGIC = 0x736c_7569_6365_524cn // ASCII 'sluiceRL'

// Node, Bun and Deno run a timer set beyond 2^31 − 1 ms after 1 ms (Node warns TimeoutOverflowWarning): sleep
// in chunks instead.
const MAX_TIMER_MS = 2 ** 31 - 1

/** Options of `new SharedRateLimiter()`. */
export interface SharedRateLimiterOptions {
  /** Tokens per `per`, and the burst: a full bucket admits `rate` tokens at once. A positive integer. */
  rate: number
  /** The period in milliseconds (finite, > 0). Sustained throughput is `rate` per `per`. */
  per: number
  /**
   * @internal Test hook: a clock in milliseconds on the scale of `sharedNow()`. Only for single-thread tests
   * with a fake clock; every thread must use the same clock, so real code never sets it.
   */
  now?: () => number
}

/** The structured-cloneable identity of a limiter: `postMessage` it, then `SharedRateLimiter.from(handle)`. */
export interface SharedRateLimiterHandle {
  readonly buffer: SharedArrayBuffer
}

/** Options of `acquire()`. */
export interface RateLimiterAcquireOptions {
  /** Aborting rejects with `signal.reason` and gives the reservation back. */
  signal?: AbortSignal
  /**
   * Longest acceptable wait in ms (≥ 0). Fail-fast and exact: if the wait computed when `acquire()` is called
   * exceeds it, `acquire()` rejects at once with `RateLimitTimeoutError` (nothing is booked). Otherwise it
   * resolves when due, even if a timer fires a little after the deadline; it rejects later only if, at its due
   * time, the exact admission check demands a wait that would end past the deadline (after an event-loop stall
   * somewhere, see the module comment), and then gives its reservation back.
   */
  timeoutMs?: number
}

// `from()` reaches the constructor through this private class, so the public constructor takes options only.
class Attach {
  readonly buffer: SharedArrayBuffer
  readonly now: (() => number) | undefined
  constructor(buffer: SharedArrayBuffer, now: (() => number) | undefined) {
    this.buffer = buffer
    this.now = now
  }
}

/**
 * A leaky-bucket rate limiter shared by all threads holding its handle: bursts up to `rate`, sustained `rate`
 * per `per` ms, waiters admitted in arrival order across threads.
 *
 * Time is integer microseconds since an epoch stored in the buffer, read from `sharedNow()` (the one clock that
 * agrees across threads on Node, Bun and Deno). The emission interval `per / rate` is rounded UP to a whole µs,
 * so the sustained rate is at most 1 µs per token slower than asked, never faster.
 *
 * @example
 * ```ts
 * const rl = new SharedRateLimiter({ rate: 60, per: 60_000 }) // 60 per minute, bursts up to 60
 * await rl.acquire(1, { signal, timeoutMs: 2_000 })
 * worker.postMessage(rl.handle) // in the worker: SharedRateLimiter.from(handle)
 * ```
 */
export class SharedRateLimiter {
  /** Structured-cloneable: `postMessage` it to a worker and call `SharedRateLimiter.from(handle)` there. */
  readonly handle: SharedRateLimiterHandle
  /** Tokens per `per`, and the burst size. */
  readonly rate: number
  /** The period in milliseconds. */
  readonly per: number
  readonly #words: BigInt64Array
  readonly #epochMs: number
  readonly #clock: () => number
  readonly #intervalUs: number
  readonly #toleranceUs: number

  constructor(options: SharedRateLimiterOptions) {
    const attach = options instanceof Attach ? options : undefined
    let buffer: SharedArrayBuffer
    if (attach) {
      buffer = attach.buffer
      this.#clock = attach.now ?? sharedNow
    } else {
      if (typeof options !== 'object' || options === null) invalidOption('options', 'an object', options)
      const rate = positiveInteger('rate', options.rate)
      const per = durationMs('per', options.per)
      this.#clock = options.now ?? sharedNow
      buffer = new SharedArrayBuffer(BYTE_LENGTH)
      new BigInt64Array(buffer, 0, WORD_COUNT)[LAYOUT_TAG] = LAYOUT_MAGIC
      const config = new Float64Array(buffer, WORD_COUNT * 8, CONFIG_COUNT)
      config[EPOCH_MS] = this.#clock()
      config[RATE] = rate
      config[PER_MS] = per
    }
    const config = new Float64Array(buffer, WORD_COUNT * 8, CONFIG_COUNT)
    this.#words = new BigInt64Array(buffer, 0, WORD_COUNT)
    this.#epochMs = config[EPOCH_MS]!
    this.rate = config[RATE]!
    this.per = config[PER_MS]!
    this.#intervalUs = emissionIntervalUs(this.rate, this.per)
    this.#toleranceUs = this.rate * this.#intervalUs
    this.handle = Object.freeze({ buffer })
  }

  /**
   * Attaches to the limiter behind `handle` (from any thread): same bucket, same limit.
   * @param internal `@internal` test hook, see `SharedRateLimiterOptions.now`.
   */
  static from(handle: SharedRateLimiterHandle, internal: { now?: () => number } = {}): SharedRateLimiter {
    const buffer = (handle as Partial<SharedRateLimiterHandle> | null)?.buffer
    if (
      !(buffer instanceof SharedArrayBuffer) ||
      buffer.byteLength !== BYTE_LENGTH ||
      new BigInt64Array(buffer, 0, WORD_COUNT)[LAYOUT_TAG] !== LAYOUT_MAGIC
    ) {
      invalidOption('handle', 'a SharedRateLimiter handle (`limiter.handle`)', handle)
    }
    return new SharedRateLimiter(new Attach(buffer, internal.now) as unknown as SharedRateLimiterOptions)
  }

  /** Whole tokens `tryAcquire()` could take right now (0 while anyone waits). Read-only, no side effect. */
  get available(): number {
    const now = this.#nowUs()
    return Math.min(
      freeTokens(this.#words, QUEUE_TAT, now, this.#intervalUs, this.rate),
      freeTokens(this.#words, ADMIT_TAT, now, this.#intervalUs, this.rate),
    )
  }

  /**
   * Takes `n` tokens if they are admissible now, without waiting and without jumping the queue: false while
   * earlier `acquire()` calls (in any thread) still wait.
   * @throws RangeError if `n` is not an integer from 1 to `rate`.
   */
  tryAcquire(n = 1): boolean {
    const cost = this.#cost(n)
    const reservation = book(this.#words, QUEUE_TAT, this.#nowUs, cost, this.#toleranceUs, 0)
    if (!reservation.booked) return false
    if (book(this.#words, ADMIT_TAT, this.#nowUs, cost, this.#toleranceUs, 0).booked) return true
    giveBack(this.#words, QUEUE_TAT, this.#nowUs(), reservation.end, cost)
    return false
  }

  /**
   * Waits (by timer) until `n` tokens are admissible, in arrival order across all threads.
   * Rejects with `signal.reason` on abort, with `RateLimitTimeoutError` (code `ERR_RATE_LIMIT_TIMEOUT`) when the
   * wait exceeds `timeoutMs`, and with RangeError if `n` is not an integer from 1 to `rate`.
   */
  acquire(n = 1, options: RateLimiterAcquireOptions = {}): Promise<void> {
    let cost: number
    let signal: AbortSignal | undefined
    let timeoutMs: number | undefined
    try {
      cost = this.#cost(n)
      signal = optionalSignal('signal', options.signal)
      timeoutMs = options.timeoutMs === undefined ? undefined : durationMs('timeoutMs', options.timeoutMs, {
        allowZero: true,
      })
    } catch (error) {
      return Promise.reject(error)
    }
    if (signal?.aborted) return Promise.reject(signal.reason)
    const maxWaitUs = timeoutMs === undefined ? Infinity : timeoutMs * 1000
    const reservation = book(this.#words, QUEUE_TAT, this.#nowUs, cost, this.#toleranceUs, maxWaitUs)
    if (!reservation.booked) return Promise.reject(this.#timeoutError(n, timeoutMs ?? 0, reservation.waitUs))
    if (reservation.waitUs === 0 && book(this.#words, ADMIT_TAT, this.#nowUs, cost, this.#toleranceUs, 0).booked) {
      return Promise.resolve()
    }
    const deadlineUs = reservation.nowUs + maxWaitUs
    return new Promise<void>((resolve, reject) => {
      let dueUs = reservation.end - this.#toleranceUs
      let timer: ReturnType<typeof setTimeout> | undefined
      let stopListening = noop
      // Settles once. A failure gives the reservation back synchronously, inside `abort()` itself, so a caller
      // that aborts and immediately acquires again already sees the freed capacity.
      const settle = (failure?: { reason: unknown }): void => {
        stopListening()
        clearTimeout(timer)
        if (!failure) return resolve()
        giveBack(this.#words, QUEUE_TAT, this.#nowUs(), reservation.end, cost)
        reject(failure.reason)
      }
      // Sleep until due, then take the exact admission check. The clock is re-read after every timer: Node 20
      // fires timers up to ~1 ms early against the shared clock (libuv's loop time is cached whole ms; measured
      // −0.75 ms here, Bun/Deno never early), timers fire late under load, and the check may ask for more.
      const wake = (): void => {
        const remainingUs = dueUs - this.#nowUs()
        if (remainingUs > 0) {
          timer = setTimeout(wake, Math.min(Math.ceil(remainingUs / 1000), MAX_TIMER_MS))
          return
        }
        const admission = book(this.#words, ADMIT_TAT, this.#nowUs, cost, this.#toleranceUs, 0)
        if (admission.booked) return settle()
        dueUs = admission.nowUs + admission.waitUs
        if (dueUs > deadlineUs) return settle({ reason: this.#timeoutError(n, timeoutMs ?? 0, admission.waitUs) })
        wake()
      }
      stopListening = onAbort(signal, (reason) => settle({ reason }))
      wake()
    })
  }

  readonly #nowUs = (): number => Math.floor((this.#clock() - this.#epochMs) * 1000)

  #cost(n: unknown): number {
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > this.rate) {
      invalidOption('n', `an integer from 1 to ${this.rate} (the limiter's rate)`, n)
    }
    return n * this.#intervalUs
  }

  #timeoutError(n: number, timeoutMs: number, waitUs: number): RateLimitTimeoutError {
    const waitMs = waitUs / 1000
    return new RateLimitTimeoutError(
      `Rate limit: ${n} token(s) admissible in ${waitMs} ms, more than the ${timeoutMs} ms timeout`,
      timeoutMs,
      waitMs,
    )
  }
}

/**
 * `per / rate` in whole µs, rounded up (never faster than asked) and at least 1 µs. `per` in µs is first snapped
 * to an integer when it is one up to float noise (0.3 ms · 1000 = 300.00000000000006).
 */
function emissionIntervalUs(rate: number, perMs: number): number {
  const perUs = perMs * 1000
  const snapped = Math.abs(perUs - Math.round(perUs)) < 1e-6 ? Math.round(perUs) : perUs
  const interval = Math.max(1, Math.ceil(snapped / rate))
  // Every TAT stays a safe integer for ~285 years of µs past the epoch as long as one burst fits in 2^52 µs.
  if (rate * interval > 2 ** 52) invalidOption('per', `at most ${2 ** 52 / 1000} ms`, perMs)
  return interval
}

function noop(): void {}

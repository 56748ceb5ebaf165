/**
 * Reference model for SharedRateLimiter tests: Python aiolimiter's leaky bucket
 * (mjpieters/aiolimiter `src/aiolimiter/leakybucket.py`), written the way aiolimiter writes it: a `level` that
 * drains continuously and admits `amount` while `level + amount <= max_rate`, plus a FIFO queue of waiters
 * (aiolimiter ≥ 1.2 admits waiters in order and refuses newcomers while anyone waits).
 *
 * Exact integer arithmetic: time is integer ms, the emission interval `intervalMs = per / rate` is an integer,
 * and the level is kept in ms of drain (tokens × intervalMs), so no float ever rounds.
 */
export class LeakyBucketModel {
  readonly rate: number
  readonly intervalMs: number
  #levelMs = 0
  #time = 0
  // The bucket as it will be right after the last queued waiter is admitted: FIFO means nobody can get in
  // ahead of the queue, so each new waiter's admission time is known when it arrives.
  #tailTime = 0
  #tailLevelMs = 0
  #queued = 0

  constructor(rate: number, intervalMs: number) {
    this.rate = rate
    this.intervalMs = intervalMs
  }

  get #capacityMs(): number {
    return this.rate * this.intervalMs
  }

  /** Moves time forward to `time` (ms); the caller reports queued waiters' admissions with `admit()`. */
  advanceTo(time: number): void {
    this.#levelMs = Math.max(0, this.#levelMs - (time - this.#time))
    this.#time = time
  }

  /** aiolimiter's `has_capacity(n)` gated by an empty queue; takes the tokens when true. */
  tryAcquire(n: number): boolean {
    if (this.#queued > 0 || this.#levelMs + n * this.intervalMs > this.#capacityMs) return false
    this.#levelMs += n * this.intervalMs
    return true
  }

  /** Whole tokens admissible now. */
  get available(): number {
    if (this.#queued > 0) return 0
    return Math.floor((this.#capacityMs - this.#levelMs) / this.intervalMs)
  }

  /** How long a waiter for `n` arriving now would wait (FIFO after everyone queued), in ms. */
  waitFor(n: number): number {
    return this.#admitTime(n) - this.#time
  }

  /**
   * A waiter for `n` arrives now: returns the time it will be admitted, or `admitAt: undefined` if its wait is
   * more than `timeoutMs` (fail-fast: it never joins the queue).
   */
  acquire(n: number, timeoutMs = Infinity): { admitAt: number | undefined; waitMs: number } {
    const admitAt = this.#admitTime(n)
    const waitMs = admitAt - this.#time
    if (waitMs > timeoutMs) return { admitAt: undefined, waitMs }
    const [from, levelAtFrom] = this.#tail()
    this.#tailTime = admitAt
    this.#tailLevelMs = Math.max(0, levelAtFrom - (admitAt - from)) + n * this.intervalMs
    this.#queued++
    return { admitAt, waitMs }
  }

  #tail(): [time: number, levelMs: number] {
    return this.#queued > 0 ? [this.#tailTime, this.#tailLevelMs] : [this.#time, this.#levelMs]
  }

  // The level drains 1 ms per ms: the first time after the tail at which `n` more fits.
  #admitTime(n: number): number {
    const [from, levelAtFrom] = this.#tail()
    return from + Math.max(0, levelAtFrom + n * this.intervalMs - this.#capacityMs)
  }

  /** A queued waiter was admitted at its time: its tokens enter the live bucket. */
  admit(n: number, at: number): void {
    this.advanceTo(at)
    this.#levelMs += n * this.intervalMs
    this.#queued--
  }
}

/**
 * Replays admissions `(at, n)` in time order through an aiolimiter bucket (capacity `rate`, draining `rate` per
 * `perMs`) and returns the largest overflow in tokens: ≤ 0 means every admission fit. By the Lindley recursion
 * the level after admission j is max over i ≤ j of (tokens admitted in [t_i, t_j] − drain over t_j − t_i), so
 * this is also the worst excess over `rate + elapsed · rate / perMs` in ANY window, and a clock skew of s ms
 * between the recorders is forgiven by accepting an overflow up to `s · rate / perMs`.
 */
export function worstOverflow(
  admissions: ReadonlyArray<{ at: number; n: number }>,
  rate: number,
  perMs: number,
): number {
  const sorted = [...admissions].sort((a, b) => a.at - b.at)
  const drainPerMs = rate / perMs
  let level = 0
  let last = sorted[0]?.at ?? 0
  let worst = -Infinity
  for (const { at, n } of sorted) {
    level = Math.max(0, level - (at - last) * drainPerMs) + n
    last = at
    worst = Math.max(worst, level - rate)
  }
  return worst
}

/**
 * One clock for every thread. `performance.now()` has a per-thread origin in Bun 1.4 and Deno 2.9
 * (a worker's reads −6…−20 ms from the main thread's; see shared/research/concurrency.md), so anything compared
 * across threads uses `timeOrigin + now()`: epoch milliseconds with sub-millisecond precision, agreeing to
 * < 1 ms between threads on all three runtimes. It is monotonic within a thread.
 * @module
 */
export function sharedNow(): number {
  return performance.timeOrigin + performance.now()
}

/** Monotonic time for durations measured inside one thread (metrics). */
export function monotonicNow(): number {
  return performance.now()
}

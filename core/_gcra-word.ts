/**
 * GCRA (the Generic Cell Rate Algorithm, ITU-T I.371; the single-word form of a leaky bucket) on one word of a
 * `BigInt64Array` in a SharedArrayBuffer. The word holds the theoretical arrival time (TAT) in integer
 * microseconds since the limiter's epoch. Private to core/rate-limiter.ts.
 *
 * Terms, all in integer µs: `cost = n · interval` (interval = per / rate, rounded up), `tolerance = rate · interval`
 * (the burst). Booking n tokens at `now`: `end = max(tat, now) + cost`; the booking is admissible at
 * `end − tolerance`, so the wait is `end − tolerance − now`. The bucket's level in tokens is
 * `(tat − now) / interval`.
 * @module
 */

/** Outcome of one `book()`: the slot `[end − cost, end)` was written (`booked`) or refused; `waitUs` ≥ 0. */
export interface Booking {
  booked: boolean
  end: number
  waitUs: number
  nowUs: number
}

/**
 * Books `cost` on `words[index]` unless the wait would exceed `maxWaitUs` (0: only if admissible now).
 *
 * Protocol: load the word, THEN read the clock, compute, compare-and-swap; on a lost race start over with a fresh
 * load and a fresh clock. Reading the clock after the load makes the `now` of every successful CAS at least the
 * `now` of the CAS before it (up to cross-thread clock skew), so the admissions the word records, in CAS order,
 * are exactly a GCRA-conforming sequence. No waiting happens here: callers sleep by timer, never spin.
 */
export function book(
  words: BigInt64Array,
  index: number,
  nowUs: () => number,
  cost: number,
  tolerance: number,
  maxWaitUs: number,
): Booking {
  for (;;) {
    const seen = Atomics.load(words, index)
    const now = nowUs()
    const end = Math.max(Number(seen), now) + cost
    const waitUs = Math.max(0, end - tolerance - now)
    if (waitUs > maxWaitUs) return { booked: false, end, waitUs, nowUs: now }
    if (Atomics.compareExchange(words, index, seen, BigInt(end)) === seen) {
      return { booked: true, end, waitUs, nowUs: now }
    }
  }
}

/**
 * Gives back the part of a booked slot `[end − cost, end)` that still lies in the future: exactly undoes the
 * booking when it is still the last one on the word (the TAT returns to `max(previous TAT, now)`), and shortens
 * the queue by that much otherwise. One atomic subtraction: it commutes with concurrent bookings.
 */
export function giveBack(words: BigInt64Array, index: number, nowUs: number, end: number, cost: number): void {
  const unused = Math.min(cost, end - nowUs)
  if (unused > 0) Atomics.sub(words, index, BigInt(unused))
}

/** Whole tokens the word would admit at `nowUs` without waiting, 0…rate. */
export function freeTokens(words: BigInt64Array, index: number, nowUs: number, interval: number, rate: number): number {
  const level = Math.max(0, Number(Atomics.load(words, index)) - nowUs)
  return Math.max(0, Math.min(rate, Math.floor((rate * interval - level) / interval)))
}

import { getEventListeners } from 'node:events'
import fc from 'fast-check'
import { afterEach, describe, expect, test, vi } from 'vitest'
import { sharedNow } from '../core/clock.ts'
import { RateLimitTimeoutError, SluiceError, TimeoutError } from '../core/errors.ts'
import { SharedRateLimiter } from '../core/rate-limiter.ts'
import { LeakyBucketModel, worstOverflow } from './_leaky-bucket-model.ts'

// Most tests run on a fake clock: the limiter's internal `now` hook reads the faked Date, and the same fake
// timers drive its sleeps, so every admission time is exact. The real shared clock is used where real time matters.
function fakeClockLimiter(rate: number, per: number): SharedRateLimiter {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'], now: 0 })
  return new SharedRateLimiter({ rate, per, now: () => Date.now() })
}

interface Tracked {
  at: number | undefined
  error: unknown
}

function isSettled({ at, error }: Tracked): boolean {
  return at !== undefined || error !== undefined
}

/** Records when (fake `Date.now()`) a promise settles. */
function track(promise: Promise<void>): Tracked {
  const tracked: Tracked = { at: undefined, error: undefined }
  promise.then(
    () => (tracked.at = Date.now()),
    (error: unknown) => (tracked.error = error),
  )
  return tracked
}

interface Pending {
  n: number
  calledAt: number
  timeoutMs: number | undefined
  controller: AbortController
  tracked: Tracked
  aborted: boolean
}

afterEach(() => {
  vi.useRealTimers()
})

describe('SharedRateLimiter options', () => {
  test.each([
    [{ rate: 0, per: 1000 }, RangeError, 'Expected `rate` to be a positive integer, got `0` (number)'],
    [{ rate: 1.5, per: 1000 }, RangeError, 'Expected `rate` to be a positive integer, got `1.5` (number)'],
    [{ rate: '5', per: 1000 }, TypeError, 'Expected `rate` to be a positive integer, got `5` (string)'],
    [{ rate: 5, per: 0 }, RangeError, 'Expected `per` to be a finite number of milliseconds > 0, got `0` (number)'],
    [{ rate: 5, per: -1 }, RangeError, 'Expected `per` to be a finite number of milliseconds > 0, got `-1` (number)'],
    [{ rate: 5, per: Infinity }, RangeError, 'got `Infinity` (number)'],
    [{ rate: 5, per: NaN }, RangeError, 'got `NaN` (number)'],
    [{ rate: 5 }, TypeError, 'Expected `per` to be a finite number of milliseconds > 0, got `undefined` (undefined)'],
    [{ rate: 1, per: 1e13 }, RangeError, 'Expected `per` to be at most 4503599627370.496 ms, got `10000000000000`'],
    [null, TypeError, 'Expected `options` to be an object, got `null` (null)'],
  ])('%o is refused', (options, type, message) => {
    expect(() => new SharedRateLimiter(options as never)).toThrow(type)
    expect(() => new SharedRateLimiter(options as never)).toThrow(message)
  })

  test('n must be an integer from 1 to rate, in tryAcquire and acquire', async () => {
    const rl = new SharedRateLimiter({ rate: 50, per: 1000 })
    expect(() => rl.tryAcquire(0)).toThrow(
      new RangeError("Expected `n` to be an integer from 1 to 50 (the limiter's rate), got `0` (number)"),
    )
    expect(() => rl.tryAcquire(51)).toThrow('got `51` (number)')
    expect(() => rl.tryAcquire(1.5)).toThrow(RangeError)
    expect(() => rl.tryAcquire('1' as never)).toThrow(TypeError)
    await expect(rl.acquire(51)).rejects.toThrow(
      new RangeError("Expected `n` to be an integer from 1 to 50 (the limiter's rate), got `51` (number)"),
    )
    await expect(rl.acquire(1, { timeoutMs: -1 })).rejects.toThrow(
      'Expected `timeoutMs` to be a finite number of milliseconds ≥ 0, got `-1` (number)',
    )
    await expect(rl.acquire(1, { signal: 'x' as never })).rejects.toThrow(
      'Expected `signal` to be an AbortSignal, got `x` (string)',
    )
    expect(rl.available).toBe(50) // nothing was taken by the refused calls
  })

  test('from() refuses anything but a limiter handle', () => {
    const message = 'Expected `handle` to be a SharedRateLimiter handle (`limiter.handle`)'
    expect(() => SharedRateLimiter.from(null as never)).toThrow(message)
    expect(() => SharedRateLimiter.from({} as never)).toThrow(message)
    expect(() => SharedRateLimiter.from({ buffer: new SharedArrayBuffer(48) })).toThrow(message)
    expect(() => SharedRateLimiter.from({ buffer: new ArrayBuffer(48) as never })).toThrow(message)
  })

  test('exposes rate and per, and a handle that survives structured cloning', () => {
    const rl = new SharedRateLimiter({ rate: 60, per: 60_000 })
    const other = SharedRateLimiter.from(structuredClone(rl.handle))
    expect([other.rate, other.per]).toEqual([60, 60_000])
    expect(rl.tryAcquire(59)).toBe(true)
    expect(other.available).toBe(1)
    expect(other.tryAcquire(2)).toBe(false)
    expect(other.tryAcquire(1)).toBe(true)
    expect(rl.available).toBe(0)
  })
})

describe('SharedRateLimiter admission', () => {
  test('a full bucket admits a burst of `rate` at once, then nothing', () => {
    const rl = fakeClockLimiter(10, 1000)
    const results = Array.from({ length: 11 }, () => rl.tryAcquire())
    expect(results).toEqual([...Array<boolean>(10).fill(true), false])
    expect(rl.available).toBe(0)
    vi.advanceTimersByTime(99)
    expect(rl.tryAcquire()).toBe(false)
    vi.advanceTimersByTime(1)
    expect(rl.available).toBe(1)
    expect(rl.tryAcquire()).toBe(true)
  })

  test('waiters are admitted one interval (per / rate) apart on the real shared clock', async () => {
    const rl = new SharedRateLimiter({ rate: 5, per: 250 }) // one token per 50 ms
    const start = sharedNow()
    while (rl.tryAcquire()) {}
    const admitted: number[] = []
    await Promise.all([1, 2, 3, 4].map(() => rl.acquire().then(() => admitted.push(sharedNow() - start))))
    admitted.forEach((at, index) => {
      const due = (index + 1) * 50
      // Never early (the burst took the bucket after `start`). Late only by timer lateness, which does not add
      // up (each due time is absolute): generous, as a loaded 2-core machine delays timers by 100+ ms at times.
      // The exact spacing is asserted on the fake clock below.
      expect(at).toBeGreaterThanOrEqual(due - 0.001)
      expect(at).toBeLessThan(due + 300)
    })
  })

  test('after an event-loop stall, overdue waiters are spaced out again, not released at once', async () => {
    const rl = new SharedRateLimiter({ rate: 5, per: 125 }) // one token per 25 ms, bursts of 5
    const admissions: Array<{ at: number; n: number }> = []
    const record = (): void => void admissions.push({ at: sharedNow(), n: 1 })
    while (rl.tryAcquire()) record()
    const waiters = Array.from({ length: 10 }, () => rl.acquire().then(record)) // due at 25, 50, … 250 ms
    // Block this thread for 300 ms: every reservation falls due while no timer can run.
    for (const until = sharedNow() + 300; sharedNow() < until; );
    await Promise.all(waiters)
    // A full bucket (5) at the end of the stall, then one per 25 ms; never 10 at once. The records are taken
    // microseconds after each admission, in the same thread: 0.02 tokens is 0.5 ms of drain.
    expect(worstOverflow(admissions, 5, 125)).toBeLessThanOrEqual(0.02)
    expect(admissions.at(-1)!.at - admissions[5]!.at).toBeGreaterThanOrEqual(5 * 25 - 1)
  })

  test('weighted tokens: n counts n times against the bucket', async () => {
    const rl = fakeClockLimiter(10, 1000) // one token per 100 ms
    expect(rl.tryAcquire(7)).toBe(true)
    expect(rl.tryAcquire(4)).toBe(false)
    expect(rl.tryAcquire(3)).toBe(true)
    const five = track(rl.acquire(5))
    await vi.advanceTimersByTimeAsync(499)
    expect(five.at).toBeUndefined()
    await vi.advanceTimersByTimeAsync(1)
    expect(five.at).toBe(500)
    expect(rl.tryAcquire(10)).toBe(false)
    await vi.advanceTimersByTimeAsync(1000)
    expect(rl.tryAcquire(10)).toBe(true)
  })

  test('waiters are admitted in arrival order: a small request never overtakes a big one', async () => {
    const rl = fakeClockLimiter(10, 1000)
    expect(rl.tryAcquire(10)).toBe(true)
    const order: string[] = []
    const big = track(rl.acquire(8).then(() => void order.push('big')))
    const small = track(rl.acquire(1).then(() => void order.push('small')))
    const medium = track(rl.acquire(3).then(() => void order.push('medium')))
    // At 500 ms five tokens have drained: enough for `small`, but it waits behind `big`; so does tryAcquire.
    await vi.advanceTimersByTimeAsync(500)
    expect(rl.tryAcquire(1)).toBe(false)
    expect(order).toEqual([])
    await vi.advanceTimersByTimeAsync(1000)
    expect(order).toEqual(['big', 'small', 'medium'])
    expect([big.at, small.at, medium.at]).toEqual([800, 900, 1200])
  })
})

describe('SharedRateLimiter timeout', () => {
  test('fails fast, and exactly: a wait over timeoutMs rejects at once, a wait equal to it is admitted', async () => {
    const rl = fakeClockLimiter(2, 1000) // one token per 500 ms
    expect(rl.tryAcquire(2)).toBe(true)
    const error = await rl.acquire(1, { timeoutMs: 499 }).catch((e: unknown) => e)
    expect(Date.now()).toBe(0) // rejected without any time passing
    expect(error).toBeInstanceOf(RateLimitTimeoutError)
    expect(error).toBeInstanceOf(TimeoutError)
    expect(error).toBeInstanceOf(SluiceError)
    expect(error).toMatchObject({ code: 'ERR_RATE_LIMIT_TIMEOUT', timeoutMs: 499, retryAfterMs: 500 })
    expect((error as Error).message).toBe('Rate limit: 1 token(s) admissible in 500 ms, more than the 499 ms timeout')
    // The refused call booked nothing, so this one is due at 500, not 1000.
    const exact = track(rl.acquire(1, { timeoutMs: 500 }))
    await vi.advanceTimersByTimeAsync(500)
    expect(exact).toEqual({ at: 500, error: undefined })
  })

  test('timeoutMs 0 admits only what tryAcquire would', async () => {
    const rl = fakeClockLimiter(2, 1000)
    await expect(rl.acquire(2, { timeoutMs: 0 })).resolves.toBeUndefined()
    await expect(rl.acquire(1, { timeoutMs: 0 })).rejects.toMatchObject({ code: 'ERR_RATE_LIMIT_TIMEOUT' })
  })

  test('a due waiter finding the bucket taken by a late admission elsewhere sleeps the difference', async () => {
    const rl = fakeClockLimiter(2, 1000)
    expect(rl.tryAcquire(2)).toBe(true)
    const onTime = track(rl.acquire(1, { timeoutMs: 800 })) // due at 500
    const tooLate = track(rl.acquire(1, { timeoutMs: 1000 })) // due at 1000, deadline 1000
    // Simulate another thread whose waiter was admitted late, so the admission word (index 1 of the buffer's
    // words) holds 300 ms more than the reservations predicted.
    Atomics.add(new BigInt64Array(rl.handle.buffer, 0, 2), 1, 300_000n)
    await vi.advanceTimersByTimeAsync(800)
    expect(onTime).toEqual({ at: 800, error: undefined })
    await vi.advanceTimersByTimeAsync(1000)
    expect(tooLate.at).toBeUndefined()
    expect(tooLate.error).toMatchObject({ code: 'ERR_RATE_LIMIT_TIMEOUT', timeoutMs: 1000, retryAfterMs: 300 })
  })
})

describe('SharedRateLimiter cancellation', () => {
  test('abort rejects with the exact reason; no listener is left on the signal either way', async () => {
    const rl = fakeClockLimiter(1, 1000)
    expect(rl.tryAcquire()).toBe(true)
    const controller = new AbortController()
    const reason = { why: 'client left' }
    const pending = rl.acquire(1, { signal: controller.signal })
    await vi.advanceTimersByTimeAsync(100)
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(1)
    controller.abort(reason)
    await expect(pending).rejects.toBe(reason)
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0)
    // A long-lived signal (a server's shutdown signal) must not collect listeners from admitted calls.
    const shutdown = new AbortController()
    const admitted = track(rl.acquire(1, { signal: shutdown.signal }))
    await vi.advanceTimersByTimeAsync(1000)
    expect(admitted.at).toBe(1000)
    expect(getEventListeners(shutdown.signal, 'abort')).toHaveLength(0)
  })

  test('an already aborted signal rejects with its reason and books nothing', async () => {
    const rl = fakeClockLimiter(1, 1000)
    const reason = new Error('gone')
    await expect(rl.acquire(1, { signal: AbortSignal.abort(reason) })).rejects.toBe(reason)
    expect(rl.tryAcquire()).toBe(true)
  })

  test('a cancelled last reservation gives its slot back: the next waiter is due when it would have been', async () => {
    const rl = fakeClockLimiter(2, 1000) // one token per 500 ms
    expect(rl.tryAcquire(2)).toBe(true)
    const controller = new AbortController()
    const cancelled = track(rl.acquire(1, { signal: controller.signal })) // due at 500
    await vi.advanceTimersByTimeAsync(100)
    controller.abort()
    const next = track(rl.acquire(1)) // without the give-back: 1000
    await vi.advanceTimersByTimeAsync(900)
    expect(cancelled.error).toBeInstanceOf(DOMException)
    expect(next.at).toBe(500)
  })

  test('a cancelled reservation in the middle of the queue lets the next arrival in earlier', async () => {
    const rl = fakeClockLimiter(2, 1000)
    expect(rl.tryAcquire(2)).toBe(true)
    const controller = new AbortController()
    const cancelled = track(rl.acquire(1, { signal: controller.signal })) // due at 500
    const second = track(rl.acquire(1)) // due at 1000: it sleeps and keeps that time
    await vi.advanceTimersByTimeAsync(100)
    controller.abort()
    const third = track(rl.acquire(1)) // without the give-back: 1500
    await vi.advanceTimersByTimeAsync(2000)
    expect(cancelled.error).toBeInstanceOf(DOMException)
    expect([second.at, third.at]).toEqual([1000, 1000])
  })

  test('a deadline-rejected reservation gives its slot back too', async () => {
    const rl = fakeClockLimiter(2, 1000)
    expect(rl.tryAcquire(2)).toBe(true)
    const doomed = track(rl.acquire(1, { timeoutMs: 600 })) // due at 500
    Atomics.add(new BigInt64Array(rl.handle.buffer, 0, 2), 1, 200_000n) // late admission elsewhere: due 700 > 600
    await vi.advanceTimersByTimeAsync(500)
    expect(doomed.error).toMatchObject({ code: 'ERR_RATE_LIMIT_TIMEOUT' })
    // Its slot was given back, so `next` is due at once by the reservations (not at 1000) and waits only for the
    // 200 ms of admissions added above.
    const next = track(rl.acquire(1))
    await vi.advanceTimersByTimeAsync(1000)
    expect(next.at).toBe(700)
  })
})

describe('SharedRateLimiter against the aiolimiter model (fast-check, fake clock)', () => {
  const params = fc.record({ rate: fc.integer({ min: 1, max: 8 }), intervalMs: fc.integer({ min: 1, max: 40 }) })
  const op = (rate: number) =>
    fc.oneof(
      fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 120 }) }),
      fc.record({ kind: fc.constant('try' as const), n: fc.integer({ min: 1, max: rate }) }),
      fc.record({
        kind: fc.constant('acquire' as const),
        n: fc.integer({ min: 1, max: rate }),
        timeoutMs: fc.option(fc.integer({ min: 0, max: 400 }), { nil: undefined }),
        // Half the timeouts land within ±2 ms of the exact wait, to hit the fail-fast boundary.
        nearWait: fc.boolean(),
        // Two instances on one handle stand in for two threads on the same clock.
        instance: fc.integer({ min: 0, max: 1 }),
      }),
    )

  test('tryAcquire, available, admission times and fail-fast timeouts match the model exactly', async () => {
    await fc.assert(
      fc.asyncProperty(
        params.chain((p) => fc.tuple(fc.constant(p), fc.array(op(p.rate), { maxLength: 40 }))),
        async ([{ rate, intervalMs }, ops]) => {
          const main = fakeClockLimiter(rate, rate * intervalMs)
          const limiters = [main, SharedRateLimiter.from(main.handle, { now: () => Date.now() })]
          const model = new LeakyBucketModel(rate, intervalMs)
          const waiters: Array<{ n: number; expectedAt: number; tracked: Tracked }> = []
          let queueHead = 0
          // Admits due model waiters in FIFO order, as the fake timers do for the limiter.
          const settleModel = (time: number): void => {
            for (; queueHead < waiters.length && waiters[queueHead]!.expectedAt <= time; queueHead++) {
              const waiter = waiters[queueHead]!
              model.admit(waiter.n, waiter.expectedAt)
            }
            model.advanceTo(time)
          }
          const advanceTo = async (time: number): Promise<void> => {
            await vi.advanceTimersByTimeAsync(time - Date.now())
            settleModel(time)
          }
          for (const step of ops) {
            if (step.kind === 'advance') await advanceTo(Date.now() + step.ms)
            else if (step.kind === 'try') expect(main.tryAcquire(step.n)).toBe(model.tryAcquire(step.n))
            else {
              const timeoutMs = step.timeoutMs !== undefined && step.nearWait
                ? Math.max(0, model.waitFor(step.n) + (step.timeoutMs % 5) - 2)
                : step.timeoutMs
              const expected = model.acquire(step.n, timeoutMs)
              const tracked = track(limiters[step.instance]!.acquire(step.n, { timeoutMs }))
              await Promise.resolve()
              if (expected.admitAt === undefined) {
                await vi.advanceTimersByTimeAsync(0)
                expect(tracked.error).toMatchObject({ code: 'ERR_RATE_LIMIT_TIMEOUT', retryAfterMs: expected.waitMs })
              } else {
                waiters.push({ n: step.n, expectedAt: expected.admitAt, tracked })
                settleModel(Date.now())
              }
            }
            expect(main.available).toBe(model.available)
          }
          await advanceTo(Date.now() + 40 * 8 * 40 + 1)
          expect(waiters.map((w) => w.tracked)).toEqual(waiters.map((w) => ({ at: w.expectedAt, error: undefined })))
          vi.useRealTimers()
        },
      ),
      { numRuns: 150 },
    )
  })

  test('with aborts: admissions fit the bucket, aborts reject with their reason, the rest arrive in time', async () => {
    const withAbort = (rate: number) =>
      fc.oneof(op(rate), fc.record({ kind: fc.constant('abort' as const), pick: fc.nat() }))
    await fc.assert(
      fc.asyncProperty(
        params.chain((p) => fc.tuple(fc.constant(p), fc.array(withAbort(p.rate), { maxLength: 40 }))),
        async ([{ rate, intervalMs }, ops]) => {
          const per = rate * intervalMs
          const main = fakeClockLimiter(rate, per)
          const limiters = [main, SharedRateLimiter.from(main.handle, { now: () => Date.now() })]
          const admissions: Array<{ at: number; n: number }> = []
          const pending: Pending[] = []
          for (const step of ops) {
            if (step.kind === 'advance') await vi.advanceTimersByTimeAsync(step.ms)
            else if (step.kind === 'try') {
              if (main.tryAcquire(step.n)) admissions.push({ at: Date.now(), n: step.n })
            } else if (step.kind === 'abort') {
              const live = pending.filter((p) => !p.aborted && !isSettled(p.tracked))
              const victim = live[step.pick % Math.max(1, live.length)]
              if (victim) {
                victim.aborted = true
                victim.controller.abort(victim)
              }
            } else {
              const controller = new AbortController()
              const options = { timeoutMs: step.timeoutMs, signal: controller.signal }
              const tracked = track(limiters[step.instance]!.acquire(step.n, options))
              const { n, timeoutMs } = step
              pending.push({ n, calledAt: Date.now(), timeoutMs, controller, tracked, aborted: false })
            }
            await vi.advanceTimersByTimeAsync(0)
          }
          await vi.advanceTimersByTimeAsync(40 * 8 * 40 * 2)
          for (const p of pending) {
            if (p.aborted && p.tracked.at === undefined) expect(p.tracked.error).toBe(p)
            else if (p.tracked.at !== undefined) {
              admissions.push({ at: p.tracked.at, n: p.n })
              if (p.timeoutMs !== undefined) expect(p.tracked.at - p.calledAt).toBeLessThanOrEqual(p.timeoutMs)
            } else {
              // Only a fail-fast refusal, decided at the call, without booking.
              expect(p.tracked.error).toBeInstanceOf(RateLimitTimeoutError)
              expect((p.tracked.error as RateLimitTimeoutError).retryAfterMs).toBeGreaterThan(p.timeoutMs ?? Infinity)
            }
          }
          expect(worstOverflow(admissions, rate, per)).toBeLessThanOrEqual(1e-9)
          vi.useRealTimers()
        },
      ),
      { numRuns: 150 },
    )
  })
})

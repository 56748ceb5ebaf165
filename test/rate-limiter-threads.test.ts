import { describe, expect, test } from 'vitest'
import { RUNTIMES, runScenario } from './_runtimes.ts'

interface ThreadsVerdict {
  runtime: string
  rate: number
  perMs: number
  durationMs: number
  decidedOverflow: number
  observedOverflow: number
  maxTokensInAnyPerWindow: number
  burstTokens: number
  tokensInDuration: number
  idealTokensInDuration: number
  threadsAdmitted: number
  threads: number
  calls: number
  earlyAdmissions: number
  firstAdmissionAfterStartMs: number
}

interface KeepAliveVerdict {
  runtime: string
  where: string
  emptied: boolean
  admittedAfterMs: number | null
  exitCode?: number
}

// Threads read the shared clock (timeOrigin + now) within < 1 ms of each other on all three runtimes
// (shared/research/concurrency.md, time-origin probe; a min-RTT ping-pong over 500 round trips bounds the
// worker − main offset to ±0.015 ms here). 1 ms of skew is worth rate / per tokens of drain.
const SKEW_MS = 1

describe.each(RUNTIMES)('SharedRateLimiter across threads on %s', (runtime) => {
  test('main + 3 workers never exceed the bucket together, burst at once, and keep the configured rate', async () => {
    const { verdict } = await runScenario<ThreadsVerdict>(runtime, 'test/scenarios/rate-limiter-threads.ts')
    const why = JSON.stringify(verdict)
    expect(verdict, why).toMatchObject({ runtime, threads: 4, threadsAdmitted: 4 })
    const { rate, perMs } = verdict
    // Exact GCRA on the limiter's own admission instants, over every window: the bucket never holds more than
    // `rate`, up to clock skew between threads.
    expect(verdict.decidedOverflow, why).toBeLessThanOrEqual((SKEW_MS * rate) / perMs + 1e-9)
    // Hence at most 2·rate in any window of length `per` (a full bucket plus what drains meanwhile).
    expect(verdict.maxTokensInAnyPerWindow, why).toBeLessThanOrEqual(2 * rate)
    // The full bucket is taken at once: in the 100 ms from the first admission, all of it but at most one
    // weighted request's leftover (weights are 1…3), against 10 tokens for a limiter without a burst.
    expect(verdict.burstTokens, why).toBeGreaterThanOrEqual(rate - 2)
    // Throughput: generous lower bound (busy 2-core machine); the upper bound is the overflow check above.
    expect(verdict.tokensInDuration, why).toBeGreaterThanOrEqual(0.8 * verdict.idealTokensInDuration)
    expect(verdict.earlyAdmissions, why).toBe(0)
  })

  test.each(['main', 'worker'])('a pending acquire keeps the %s thread alive until it is admitted', async (where) => {
    const { verdict } = await runScenario<KeepAliveVerdict>(runtime, 'test/scenarios/rate-limiter-keep-alive.ts', {
      args: [where],
    })
    expect(verdict).toMatchObject({ runtime, where, emptied: true })
    expect(verdict.admittedAfterMs).toBeGreaterThanOrEqual(300 - SKEW_MS)
    expect(verdict.admittedAfterMs).toBeLessThan(1000)
    if (where === 'worker') expect(verdict.exitCode).toBe(0)
  })

  test('threads agree on the clock: a bucket a worker emptied is not seen as older by the main thread', async () => {
    const { verdict } = await runScenario<KeepAliveVerdict>(runtime, 'test/scenarios/rate-limiter-clock.ts')
    expect(verdict).toMatchObject({ runtime, emptied: true })
    expect(verdict.admittedAfterMs).toBeGreaterThanOrEqual(300 - SKEW_MS)
    expect(verdict.admittedAfterMs).toBeLessThan(1000)
  })

  test('control: a pending Atomics.waitAsync in its place lets the process exit before it settles', async () => {
    await expect(runScenario(runtime, 'test/scenarios/rate-limiter-keep-alive.ts', { args: ['wait-async'] })).rejects
      .toThrow(/no verdict \(exit 0\)/)
  })
})

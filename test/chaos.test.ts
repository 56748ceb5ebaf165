/**
 * The chaos soak, CI size: ≥ 2 000 streams of the seeded fault mix (test/chaos/stream-mix.ts) through the real
 * `sluice` binary in front of the fault-injecting test upstream, with a small --concurrency and bursts so queue
 * timeouts happen too. Every stream's client outcome must be the one its fault produces (or overload's: a queue
 * timeout), the upstream must have seen exactly the attempts retries may make, and afterwards nothing may be
 * left: permits, active streams, upstream connections, stderr noise, memory above the bound, secrets in output.
 * `npm run soak -- --duration 10m` runs the same thing for as long as asked.
 *
 * The seed is fixed so a CI failure replays; SLUICE_CHAOS_SEED=N picks another (printed with the tally).
 */
import { describe, expect, test } from 'vitest'
import { runScenario } from './_runtimes.ts'
import { workersSupported } from './chaos/binary.ts'
import { formatReport, runSoak, type SoakReport } from './chaos/run-soak.ts'
import { FAULTS } from './chaos/stream-mix.ts'

const SEED = Number(process.env.SLUICE_CHAOS_SEED ?? 20_251_124)
const STREAMS = 2_000
/** `--workers 2` too: probed, so the file still runs on a build whose binary refuses the flag (it did until fb17d4f). */
const pool = await workersSupported(2)

describe.each([
  { workers: 0, supported: true, reason: '' },
  { workers: 2, ...pool },
])('chaos soak, --workers $workers', ({ workers, supported, reason }) => {
  test.skipIf(!supported)(
    `${STREAMS} streams of the fault mix: each outcome as its fault dictates, nothing leaked${
      supported ? '' : ` (skipped: ${reason})`
    }`,
    async () => {
      const report = await runSoak({
        seed: SEED,
        streams: STREAMS,
        lanes: 24,
        concurrency: 16,
        workers,
        queueTimeoutMs: 2_000,
        idleTimeoutMs: 1_000,
        retries: 2,
        warmupStreams: 300,
      })
      const tally = formatReport(report)
      console.log(tally)
      const context = `seed ${report.seed}\n${tally}`

      expect(report.streams, context).toBeGreaterThanOrEqual(STREAMS)
      expect(report.violationSamples, context).toEqual([])
      expect(report.violations, context).toBe(0)
      expect(report.attemptViolations, context).toEqual([])
      expect(report.leaks, context).toEqual([])
      expect(report.secretLeaks, context).toEqual([])
      expect(report.exit, context).toEqual({ code: 0, signal: null, stderr: [] })
      expect(report.memory.withinBound, context).toBe(true)
      expect(report.accessLog.malformed, context).toBe(0)
      expect(report.accessLog.lines, context).toBeLessThanOrEqual(report.streams)
      // The mix really exercised every fault, each to its own outcome, and overload did not drown them.
      expect(faultsWithoutOwnOutcome(report), context).toEqual([])
      expect(report.outcomes['queue-timeout'] ?? 0, context).toBeGreaterThan(0)
      expect(report.overloaded, context).toBeLessThan(report.streams / 3)
      // Overload may turn any stream into a queue timeout, but not most of them: each fault (bursts aside, which
      // are there to overload) got its own outcome for at least half of its streams, so retries that never work
      // (their outcome would pass as overload's) cannot hide.
      expect(faultsMostlyOverloaded(report), context).toEqual([])
      // With workers, streams really crashed their worker mid-flight, and what shared it was told, not cut off.
      if (workers > 0) expect(report.faults['worker-crash'] ?? 0, context).toBeGreaterThan(5)
    },
    240_000,
  )
})

// The soak's stalled streams hung (no idle-timeout event, upstream never closed) only under load: after GCs,
// an abort no longer reached the upstream body read (test/chaos/gc-cancel-scenario.ts says why). Forced here.
test('after a full GC the idle timeout still ends a stalled stream; a client leaving closes its upstream', async () => {
  const { verdict } = await runScenario<
    { idle: Record<string, number>; left: Record<string, number>; streams: number }
  >(
    'node',
    'test/chaos/gc-cancel-scenario.ts',
    { runtimeFlags: ['--expose-gc'], timeoutMs: 30_000 },
  )
  expect(verdict).toEqual({ idle: { idle_timeout: 20 }, left: { 'upstream-closed': 20 }, streams: 20 })
})

/** Faults that never once produced their own outcome (only overload's, or did not run). */
function faultsWithoutOwnOutcome(report: SoakReport): string[] {
  // worker-crash runs only with workers (checked by its own expectation below).
  return FAULTS.filter((fault) => (fault !== 'worker-crash' || report.workers > 0) && (report.ownOutcomes[fault] ?? 0) === 0)
}

/** Faults (bursts aside) whose streams got overload's outcome more often than their own. */
function faultsMostlyOverloaded(report: SoakReport): string[] {
  // Streams a worker crash ended (collateral) are not overload's: they leave the half to reach.
  const crashed = (fault: string): number =>
    Object.entries(report.outcomesByFault[fault] ?? {})
      .filter(([outcome]) => /worker_crashed|^truncated-cut$/.test(outcome))
      .reduce((sum, [, count]) => sum + count, 0)
  return FAULTS.filter((fault) =>
    fault !== 'burst' && fault !== 'worker-crash' &&
    (report.ownOutcomes[fault] ?? 0) < ((report.faults[fault] ?? 0) - crashed(fault)) / 2
  )
}

// The worker pool on node, bun and deno: each runtime runs test/scenarios/pool-core.ts (the streaming call's core
// scenarios through createStreamRunner({ workers: 2 }), a worker killed mid-stream, the queue timeout) against
// one test upstream in this (Node) process; the upstream's own records judge cancellation and retries, and the
// scenario process must exit on its own once its pools are closed (no leaked handle, no worker left).
import { describe, expect, test } from 'vitest'
import { runScenario, RUNTIMES } from './_runtimes.ts'
import { type CoreVerdict, expectCoreCalls, expectQueueAndIdle, useTestUpstream } from './_stream-core-verdict.ts'
import { expectedContent } from './upstream/behaviour.ts'

const API_KEY = 'sk-pool-runtimes'
const upstream = useTestUpstream(API_KEY)

interface Verdict extends CoreVerdict {
  crash: { first: boolean; heldDuringCrash: number; code: string; done: boolean; afterCrash: string }
}

/** The example transform masks digits: what every content looks like through it. */
const masked = (chunks: number): string => expectedContent(chunks).replace(/\d/g, '•')

describe.each(RUNTIMES)('%s', (runtime) => {
  test('pool: streams, cancel <50 ms, retries, timeouts, a killed worker, permits back, exits by itself', async () => {
    const result = await runScenario<Verdict>(runtime, 'test/scenarios/pool-core.ts', {
      args: [upstream().url, API_KEY, `pool-${runtime}`],
      timeoutMs: 90_000,
    })
    const { verdict, exitCode, signal } = result
    await expectCoreCalls(upstream(), result, `pool-${runtime}`, masked)
    expect(verdict.crash).toEqual({
      first: true,
      heldDuringCrash: 1,
      code: 'worker_crashed',
      done: false,
      afterCrash: expectedContent(2),
    })
    expect((await upstream().waitForClosed(`pool-${runtime}-crash`)).outcome).toBe('aborted')
    expectQueueAndIdle(upstream(), verdict, `pool-${runtime}`, 1_000)
    // The scenario closed its pools and returned: the process ended by itself.
    expect({ exitCode, signal }).toEqual({ exitCode: 0, signal: null })
  }, 120_000)
})

// The worker pool on node, bun and deno: each runtime runs test/scenarios/pool-core.ts (the streaming call's core
// scenarios through createStreamRunner({ workers: 2 }), a worker killed mid-stream, the queue timeout) against
// one test upstream in this (Node) process; the upstream's own records judge cancellation and retries, and the
// scenario process must exit on its own once its pools are closed (no leaked handle, no worker left).
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { runScenario, RUNTIMES } from './_runtimes.ts'
import { expectedContent } from './upstream/behaviour.ts'
import { startUpstream, type TestUpstream } from './upstream/server.ts'

const API_KEY = 'sk-pool-runtimes'
let upstream: TestUpstream

beforeAll(async () => {
  upstream = await startUpstream({ apiKey: API_KEY })
})
afterAll(() => upstream.close())

interface Verdict {
  error?: string
  happy: { content: string; last: string; events: number }
  cancelled: { id: string; abortedAt: number; rejected: boolean }[]
  retry: { content: string; retries: number }
  otherRetries: string[]
  idle: { content: string; code: string }
  noDone: { content: string; code: string }
  cutMid: { content: string; code: string; wholeEvents: boolean }
  crash: { first: boolean; heldDuringCrash: number; code: string; done: boolean; afterCrash: string }
  queue: { code: string; status: number; elapsed: number }
  idleState: {
    available: number
    capacity: number
    active: number
    telemetryActive: number
    disconnects: number
    ends: number
    starts: number
  }
}

/** The example transform masks digits: what every content looks like through it. */
const masked = (chunks: number): string => expectedContent(chunks).replace(/\d/g, '•')

describe.each(RUNTIMES)('%s', (runtime) => {
  test('pool: streams, cancel <50 ms, retries, timeouts, a killed worker, permits back, exits by itself', async () => {
    const { verdict, stderr, exitCode, signal } = await runScenario<Verdict>(runtime, 'test/scenarios/pool-core.ts', {
      args: [upstream.url, API_KEY, `pool-${runtime}`],
      timeoutMs: 90_000,
    })
    expect(verdict.error, stderr).toBeUndefined()
    expect(verdict.happy).toEqual({ content: masked(30), last: '[DONE]', events: 33 })

    const delays: number[] = []
    for (const { id, abortedAt, rejected } of verdict.cancelled) {
      expect(rejected).toBe(true)
      const record = await upstream.waitForClosed(id)
      expect(record.outcome).toBe('aborted')
      delays.push(record.closedAt! - abortedAt)
    }
    expect(Math.min(...delays), `delays ${delays.map((d) => d.toFixed(1)).join(', ')} ms`).toBeLessThan(50)

    expect(verdict.retry, `other retries: ${verdict.otherRetries.join(', ')}`).toEqual({
      content: masked(3),
      retries: 2,
    })
    expect(upstream.attempts(`pool-${runtime}-retry`).map((record) => record.status)).toEqual([503, 503, 200])
    expect(verdict.idle).toEqual({ content: masked(2), code: 'idle_timeout' })
    expect(verdict.noDone).toEqual({ content: masked(3), code: 'upstream_truncated' })
    expect(verdict.cutMid).toEqual({ content: masked(3), code: 'upstream_truncated', wholeEvents: true })
    expect(verdict.crash).toEqual({
      first: true,
      heldDuringCrash: 1,
      code: 'worker_crashed',
      done: false,
      afterCrash: expectedContent(2),
    })
    expect((await upstream.waitForClosed(`pool-${runtime}-crash`)).outcome).toBe('aborted')
    expect(verdict.queue).toMatchObject({ code: 'ERR_QUEUE_TIMEOUT', status: 503 })
    expect(verdict.queue.elapsed).toBeGreaterThanOrEqual(95)
    expect(verdict.queue.elapsed).toBeLessThan(1_000)
    expect(upstream.attempts(`pool-${runtime}-queued`)).toHaveLength(0)
    const { idleState } = verdict
    expect(idleState).toMatchObject({ available: idleState.capacity, active: 0, telemetryActive: 0, disconnects: 3 })
    expect(idleState.ends).toBe(idleState.starts)
    // The scenario closed its pools and returned: the process ended by itself.
    expect({ exitCode, signal }).toEqual({ exitCode: 0, signal: null })
  }, 120_000)
})

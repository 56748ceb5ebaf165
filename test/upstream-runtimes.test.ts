// The streaming call on node, bun and deno: each runtime runs test/scenarios/upstream-core.ts against one test
// upstream in this (Node) process, and the upstream's own records (attempts, close times) judge the result.
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { runScenario, RUNTIMES } from './_runtimes.ts'
import { expectedContent } from './upstream/behaviour.ts'
import { startUpstream, type TestUpstream } from './upstream/server.ts'

const API_KEY = 'sk-runtimes'
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

describe.each(RUNTIMES)('%s', (runtime) => {
  test('streams, cancels a stalled upstream in <50 ms, retries, idle timeout, truncation, permits back', async () => {
    const { verdict, stderr } = await runScenario<Verdict>(runtime, 'test/scenarios/upstream-core.ts', {
      args: [upstream.url, API_KEY, runtime],
    })
    expect(verdict.error, stderr).toBeUndefined()
    expect(verdict.happy).toEqual({ content: expectedContent(30), last: '[DONE]', events: 33 })

    // Cancellation reached the stalled upstream: its close time, against the scenario's abort time (same clock).
    const delays: number[] = []
    for (const { id, abortedAt, rejected } of verdict.cancelled) {
      expect(rejected).toBe(true)
      const record = await upstream.waitForClosed(id)
      expect(record.outcome).toBe('aborted')
      delays.push(record.closedAt! - abortedAt)
    }
    expect(Math.min(...delays), `delays ${delays.map((d) => d.toFixed(1)).join(', ')} ms`).toBeLessThan(50)

    expect(verdict.retry, `other retries: ${verdict.otherRetries.join(', ')}`).toEqual({ content: expectedContent(3), retries: 2 })
    expect(upstream.attempts(`${runtime}-retry`).map((record) => record.status)).toEqual([503, 503, 200])
    expect(verdict.idle).toEqual({ content: expectedContent(2), code: 'idle_timeout' })
    expect(verdict.noDone).toEqual({ content: expectedContent(3), code: 'upstream_truncated' })
    expect(verdict.cutMid).toEqual({ content: expectedContent(3), code: 'upstream_truncated', wholeEvents: true })
    expect(upstream.attempts(`${runtime}-cut`)).toHaveLength(1)
    expect(verdict.queue).toMatchObject({ code: 'ERR_QUEUE_TIMEOUT', status: 503 })
    expect(verdict.queue.elapsed).toBeGreaterThanOrEqual(95)
    expect(verdict.queue.elapsed).toBeLessThan(600)
    expect(upstream.attempts(`${runtime}-queued`)).toHaveLength(0)
    const { idleState } = verdict
    expect(idleState).toMatchObject({ available: idleState.capacity, active: 0, telemetryActive: 0, disconnects: 3 })
    expect(idleState.ends).toBe(idleState.starts)
  })
})

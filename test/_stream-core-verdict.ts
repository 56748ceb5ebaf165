/**
 * The test side of test/scenarios/_stream-core.ts: one test upstream per file, the verdict the core scenarios
 * (upstream-core.ts, pool-core.ts) report, and the checks both suites make of it against the upstream's records.
 */
import { afterAll, beforeAll, expect } from 'vitest'
import { startUpstream, type TestUpstream } from './upstream/server.ts'

/** Starts a test upstream before the file's tests and closes it after them; the accessor returns it. */
export function useTestUpstream(apiKey: string): () => TestUpstream {
  let upstream: TestUpstream
  beforeAll(async () => {
    upstream = await startUpstream({ apiKey })
  })
  afterAll(() => upstream.close())
  return () => upstream
}

export interface CoreVerdict {
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

/**
 * The core calls: no error, the happy stream, cancellation reaching the stalled upstream (its close time against
 * the scenario's abort time, same clock), retries, the idle timeout and truncations. `prefix` is the scenario's
 * id prefix; `expected(chunks)` what the content of `chunks` chunks looks like to the client.
 */
export async function expectCoreCalls(
  upstream: TestUpstream,
  { verdict, stderr }: { verdict: CoreVerdict; stderr: string },
  prefix: string,
  expected: (chunks: number) => string,
): Promise<void> {
  expect(verdict.error, stderr).toBeUndefined()
  expect(verdict.happy).toEqual({ content: expected(30), last: '[DONE]', events: 33 })

  const delays: number[] = []
  for (const { id, abortedAt, rejected } of verdict.cancelled) {
    expect(rejected).toBe(true)
    const record = await upstream.waitForClosed(id)
    expect(record.outcome).toBe('aborted')
    delays.push(record.closedAt! - abortedAt)
  }
  expect(Math.min(...delays), `delays ${delays.map((d) => d.toFixed(1)).join(', ')} ms`).toBeLessThan(50)

  expect(verdict.retry, `other retries: ${verdict.otherRetries.join(', ')}`).toEqual({
    content: expected(3),
    retries: 2,
  })
  expect(upstream.attempts(`${prefix}-retry`).map((record) => record.status)).toEqual([503, 503, 200])
  expect(verdict.idle).toEqual({ content: expected(2), code: 'idle_timeout' })
  expect(verdict.noDone).toEqual({ content: expected(3), code: 'upstream_truncated' })
  expect(verdict.cutMid).toEqual({ content: expected(3), code: 'upstream_truncated', wholeEvents: true })
}

/** The queue timeout (no upstream attempt, rejected within `maxElapsedMs`) and every permit and call back. */
export function expectQueueAndIdle(
  upstream: TestUpstream,
  verdict: CoreVerdict,
  prefix: string,
  maxElapsedMs: number,
): void {
  expect(verdict.queue).toMatchObject({ code: 'ERR_QUEUE_TIMEOUT', status: 503 })
  expect(verdict.queue.elapsed).toBeGreaterThanOrEqual(95)
  expect(verdict.queue.elapsed).toBeLessThan(maxElapsedMs)
  expect(upstream.attempts(`${prefix}-queued`)).toHaveLength(0)
  const { idleState } = verdict
  expect(idleState).toMatchObject({ available: idleState.capacity, active: 0, telemetryActive: 0, disconnects: 3 })
  expect(idleState.ends).toBe(idleState.starts)
}

// Retries before the first byte only, Retry-After, the queue budget covering backoff, pass-through of 4xx,
// unreachable upstreams, and buffered calls — against the real test upstream.
import { createServer } from 'node:net'
import { describe, expect, test } from 'vitest'
import { SharedRateLimiter } from '../core/rate-limiter.ts'
import {
  QueueTimeoutError,
  UpstreamConnectError,
  UpstreamStatusError,
  UpstreamTimeoutError,
} from '../core/upstream/errors.ts'
import { expectedContent } from './upstream/behaviour.ts'
import { contentOf, errorOf, readSse, RUNNER, useHarness } from './upstream/harness.ts'

const harness = useHarness()
// `retry.random` is a function: it cannot cross into a worker pool (which refuses it), so in-process only.
const inProcessOnly = test.skipIf(RUNNER === 'pool')

async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  return port
}

describe('retries before the first byte', () => {
  test.each([500, 502, 503, 504, 429])('%i is retried until an attempt succeeds', async (status) => {
    const client = harness.client({ retry: { maxAttempts: 3, baseDelayMs: 5, maxDelayMs: 20 } })
    const id = `retry-${status}`
    const read = await readSse(await client.stream(harness.request({ id, chunks: 3, fail: status, failTimes: 2 })))
    expect(contentOf(read.events)).toBe(expectedContent(3))
    expect(harness.upstream.attempts(id).map((record) => record.status)).toEqual([status, status, 200])
    await client.idle()
    const retries = client.log.filter((event) => event.type === 'retry')
    expect(retries.map((event) => [event.attempt, event.upstreamStatus, event.reason])).toEqual([
      [1, status, 'ERR_UPSTREAM_STATUS'],
      [2, status, 'ERR_UPSTREAM_STATUS'],
    ])
    // Permits are given back for each backoff and taken again: one acquire per attempt.
    expect(client.log.filter((event) => event.type === 'acquire')).toHaveLength(3)
  })

  inProcessOnly('backoff is exponential with full jitter, from the injected random source', async () => {
    const client = harness.client({ retry: { maxAttempts: 4, baseDelayMs: 40, maxDelayMs: 100, random: () => 0.5 } })
    await readSse(await client.stream(harness.request({ id: 'jitter', chunks: 1, fail: 503, failTimes: 3 })))
    await client.idle()
    // 0.5 × min(100, 40 × 2^(n−1)): 20, 40, 50.
    expect(client.log.filter((event) => event.type === 'retry').map((event) => event.delayMs)).toEqual([20, 40, 50])
    const starts = harness.upstream.attempts('jitter').map((record) => record.startedAt)
    const gaps = starts.slice(1).map((start, index) => start - starts[index]!)
    expect(gaps[0]).toBeGreaterThanOrEqual(19)
    expect(gaps[2]).toBeGreaterThanOrEqual(49)
  })

  test('retry-after-ms is honoured (within a band), not the jittered backoff', async () => {
    const client = harness.client({ retry: { baseDelayMs: 1, maxDelayMs: 1 } })
    await readSse(
      await client.stream(harness.request({ id: 'retry-after-ms', fail: 429, failTimes: 1, retryAfterMs: 250 })),
    )
    const [first, second] = harness.upstream.attempts('retry-after-ms')
    expect(second!.startedAt - first!.startedAt).toBeGreaterThanOrEqual(248)
    expect(second!.startedAt - first!.startedAt).toBeLessThan(450)
  })

  test('Retry-After in seconds is honoured (within a band)', async () => {
    const client = harness.client({ retry: { baseDelayMs: 1, maxDelayMs: 1 }, queueTimeoutMs: 3_000 })
    await readSse(await client.stream(harness.request({ id: 'retry-after-s', fail: 503, failTimes: 1, retryAfter: 1 })))
    const [first, second] = harness.upstream.attempts('retry-after-s')
    expect(second!.startedAt - first!.startedAt).toBeGreaterThanOrEqual(995)
    expect(second!.startedAt - first!.startedAt).toBeLessThan(1_300)
  })

  test('Retry-After is capped by maxRetryAfterMs', async () => {
    const client = harness.client({ retry: { maxRetryAfterMs: 100 }, queueTimeoutMs: 3_000 })
    await readSse(
      await client.stream(harness.request({ id: 'retry-after-cap', fail: 503, failTimes: 1, retryAfter: 30 })),
    )
    await client.idle()
    expect(client.log.find((event) => event.type === 'retry')).toMatchObject({ delayMs: 100 })
  })

  test('backoff counts against the queue budget: a Retry-After beyond it fails at once, upstream status', async () => {
    const client = harness.client({ queueTimeoutMs: 500, retry: { maxRetryAfterMs: 60_000 } })
    await client.ready
    const started = performance.now()
    const error = await client.stream(harness.request({ id: 'over-budget', fail: 503, retryAfter: 2 })).catch((
      e: unknown,
    ) => e)
    expect(performance.now() - started).toBeLessThan(400)
    expect(error).toBeInstanceOf(UpstreamStatusError)
    expect(error).toMatchObject({ status: 503, upstreamStatus: 503, retryAfterMs: 2_000, code: 'ERR_UPSTREAM_STATUS' })
    expect(harness.upstream.attempts('over-budget')).toHaveLength(1)
  })

  test('exhausted retries reject before any byte with a status for the gateway', async () => {
    const client = harness.client({ retry: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 5 } })
    const error = await client.stream(harness.request({ id: 'exhausted', fail: 502 })).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_UPSTREAM_STATUS', status: 502, upstreamStatus: 502 })
    expect((error as UpstreamStatusError).body).toContain('Mock failure 502')
    expect(harness.upstream.attempts('exhausted')).toHaveLength(3)
    await client.idle()
    expect(client.log.at(-2)).toMatchObject({
      type: 'error',
      code: 'ERR_UPSTREAM_STATUS',
      status: 502,
      afterFirstChunk: false,
    })
    expect(client.log.at(-1)).toMatchObject({ type: 'end', outcome: 'error', status: 502, attempts: 3 })
  })

  test('a resumed call (CallOptions.resume) counts the attempts and the queue time it brings', async () => {
    const client = harness.client({ queueTimeoutMs: 2_000, retry: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 5 } })
    await client.ready
    // Two attempts made elsewhere: one left, numbered 3.
    const error = await client.stream(harness.request({ id: 'resumed-attempts', fail: 502 }), {
      id: 'resumed-attempts',
      resume: { attempts: 2, elapsedMs: 0 },
    }).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_UPSTREAM_STATUS', status: 502 })
    expect(harness.upstream.attempts('resumed-attempts')).toHaveLength(1)
    await client.idle()
    expect(client.log.filter((event) => event.type === 'acquire')).toMatchObject([{ attempt: 3 }])
    expect(client.log.at(-1)).toMatchObject({ type: 'end', attempts: 3 })
    // 1.9 s of the 2 s budget spent elsewhere: headers 400 ms away come too late; without it they would not.
    const late = await client.stream(harness.request({ id: 'resumed-budget', headerDelay: 400 }), {
      resume: { attempts: 0, elapsedMs: 1_900 },
    }).catch((e: unknown) => e)
    expect(late).toBeInstanceOf(QueueTimeoutError)
    expect((await harness.upstream.waitForClosed('resumed-budget')).outcome).toBe('aborted')
    const bad = harness.request({ id: 'resume-bad' })
    await expect(client.stream(bad, { resume: { attempts: -1, elapsedMs: 0 } }))
      .rejects.toThrow('Expected `resume.attempts` to be a non-negative integer, got `-1` (number)')
    await expect(client.stream(bad, { resume: { attempts: 0, elapsedMs: Number.NaN } }))
      .rejects.toThrow('Expected `resume.elapsedMs` to be a finite number of milliseconds ≥ 0, got `NaN` (number)')
  })

  test.each([400, 401, 404, 422])('%i is passed through with the upstream body, never retried', async (status) => {
    const client = harness.client()
    const id = `passthrough-${status}`
    const response = await client.stream(harness.request({ id, fail: status }))
    expect(response.status).toBe(status)
    expect(response.headers.get('content-type')).toBe('application/json')
    const body = (await response.json()) as { error: { message: string; code: string } }
    expect(body.error.code).toBe(`mock_${status}`)
    expect(harness.upstream.attempts(id)).toHaveLength(1)
  })

  test('an unreachable upstream is retried, then rejects with UpstreamConnectError (502)', async () => {
    const client = harness.client({ retry: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 5 } })
    const port = await closedPort()
    const error = await client.stream({ url: `http://127.0.0.1:${port}/v1/chat/completions`, body: '{}' }).catch((
      e: unknown,
    ) => e)
    expect(error).toBeInstanceOf(UpstreamConnectError)
    expect(error).toMatchObject({ status: 502, code: 'ERR_UPSTREAM_CONNECT' })
    await client.idle()
    expect(client.log.filter((event) => event.type === 'retry').map((event) => event.reason)).toEqual([
      'ERR_UPSTREAM_CONNECT',
      'ERR_UPSTREAM_CONNECT',
    ])
  })

  test('a connection lost after the headers but before any event is retried invisibly', async () => {
    const client = harness.client()
    const read = await readSse(
      await client.stream(harness.request({ id: 'cut-before-body', chunks: 3, cutBeforeBody: 1 })),
    )
    expect(read.error).toBeUndefined()
    expect(contentOf(read.events)).toBe(expectedContent(3))
    expect(harness.upstream.attempts('cut-before-body')).toHaveLength(2)
  })

  test('never retried after the first chunk: the upstream sees exactly one attempt', async () => {
    const client = harness.client({ retry: { maxAttempts: 5, baseDelayMs: 1 } })
    const read = await readSse(await client.stream(harness.request({ id: 'cut-after-first', chunks: 5, cutAfter: 1 })))
    expect(contentOf(read.events)).toBe(expectedContent(1))
    expect(errorOf(read.events)).toMatchObject({ code: 'upstream_truncated' })
    await harness.upstream.waitForClosed('cut-after-first')
    expect(harness.upstream.attempts('cut-after-first')).toHaveLength(1)
    await client.idle()
    expect(client.log.some((event) => event.type === 'retry')).toBe(false)
  })

  test('the rate limiter is charged once per attempt', async () => {
    const rateLimiter = new SharedRateLimiter({ rate: 3, per: 60_000 })
    const client = harness.client({ rateLimiter, queueTimeoutMs: 2_000, retry: { baseDelayMs: 1, maxDelayMs: 2 } })
    await readSse(await client.stream(harness.request({ id: 'charged', fail: 503, failTimes: 2 })))
    // Three attempts spent the three tokens; the next call cannot get one within its queue budget.
    const error = await client.stream(harness.request({ id: 'starved' })).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(QueueTimeoutError)
    expect((error as QueueTimeoutError).retryAfterMs).toBeGreaterThan(10_000)
    expect(harness.upstream.attempts('starved')).toHaveLength(0)
  })
})

describe('complete() (buffered)', () => {
  test('returns the upstream JSON with its status after releasing the permits', async () => {
    const client = harness.client({ bufferedWeight: 2 })
    const response = await client.complete(harness.request({ id: 'buffered', chunks: 4 }, false))
    expect(harness.semaphore.available).toBe(harness.semaphore.capacity)
    expect(response.status).toBe(200)
    const json = (await response.json()) as { choices: { message: { content: string } }[] }
    expect(json.choices[0]!.message.content).toBe(expectedContent(4))
    await client.idle()
    expect(client.log.map((event) => event.type)).toEqual(['start', 'acquire', 'end'])
    expect(client.log.at(-1)).toMatchObject({ kind: 'buffered', outcome: 'completed', status: 200 })
  })

  test('gets the same retries, including a body cut halfway', async () => {
    const client = harness.client()
    const first = await client.complete(harness.request({ id: 'buffered-retry', fail: 503, failTimes: 1 }, false))
    expect(first.status).toBe(200)
    const response = await client.complete(harness.request({ id: 'buffered-cut', cutAfter: 0 }, false)).catch((
      e: unknown,
    ) => e)
    expect(response).toMatchObject({ code: 'ERR_UPSTREAM_TRUNCATED', status: 502 })
    expect(harness.upstream.attempts('buffered-cut')).toHaveLength(3)
    const passthrough = await client.complete(harness.request({ id: 'buffered-400', fail: 400 }, false))
    expect(passthrough.status).toBe(400)
  })

  test('has a total timeout covering the body', async () => {
    const client = harness.client({ totalTimeoutMs: 200, queueTimeoutMs: 5_000 })
    await client.ready
    const started = performance.now()
    const error = await client.complete(harness.request({ id: 'buffered-slow', ttft: 2_000 }, false)).catch((
      e: unknown,
    ) => e)
    expect(performance.now() - started).toBeGreaterThanOrEqual(195)
    expect(performance.now() - started).toBeLessThan(600)
    expect(error).toBeInstanceOf(UpstreamTimeoutError)
    expect(error).toMatchObject({ status: 504, code: 'ERR_TIMEOUT' })
    expect((await harness.upstream.waitForClosed('buffered-slow')).outcome).toBe('aborted')
  })
})

// Cancellation reaching the upstream (timed at the upstream's own close record), the queue timeout, leaving the
// queue, weights on shared or separate semaphores, and backpressure from a client that stops reading.
import { describe, expect, test, vi } from 'vitest'
import { sharedNow } from '../core/clock.ts'
import { SharedSemaphore } from '../core/semaphore.ts'
import { QueueTimeoutError } from '../core/upstream/errors.ts'
import { readSse, RUNNER, useHarness } from './upstream/harness.ts'

const harness = useHarness()

/**
 * The machine's 2 cores are shared with other test runs, so one sample can include tens of ms of scheduler
 * delay that says nothing about sluice. Each scenario runs up to 3 times and the fastest must be under the bound:
 * a cancel that waits for the next chunk (the upstream is stalled forever) or for a timer never gets there.
 */
async function fastestOf(tries: number, sample: (round: number) => Promise<number>): Promise<number> {
  let best = Number.POSITIVE_INFINITY
  for (let round = 0; round < tries && best >= CANCEL_BOUND_MS; round++) best = Math.min(best, await sample(round))
  return best
}
const CANCEL_BOUND_MS = 50
/** Polling bound for a pool's worker to reach a state (its startup included, on a loaded machine). */
const WAIT = { timeout: 15_000, interval: 5 }

describe('cancellation', () => {
  test('the client signal aborts a stalled upstream within 50 ms (measured at the upstream)', async () => {
    const client = harness.client()
    const delay = await fastestOf(3, async (round) => {
      const id = `cancel-stalled-${round}`
      const controller = new AbortController()
      const response = await client.stream(harness.request({ id, chunks: 5, stallAfter: 1 }), {
        signal: controller.signal,
      })
      const reader = response.body!.getReader()
      await reader.read()
      // The forwarder is now blocked in a read of the stalled upstream.
      await harness.upstream.waitFor(id, (record) => record.chunksWritten === 1)
      const abortedAt = sharedNow()
      controller.abort(new Error('client left'))
      const record = await harness.upstream.waitForClosed(id)
      expect(record.outcome).toBe('aborted')
      await expect(reader.read()).rejects.toThrow('client left')
      return record.closedAt! - abortedAt
    })
    expect(delay).toBeLessThan(CANCEL_BOUND_MS)
    await client.idle()
    expect(client.log.at(-2)).toMatchObject({ type: 'disconnect', afterFirstChunk: true })
    expect(client.log.at(-1)).toMatchObject({ type: 'end', outcome: 'disconnect' })
  })

  test("the body's cancel() aborts a stalled upstream within 50 ms", async () => {
    const client = harness.client()
    const delay = await fastestOf(3, async (round) => {
      const id = `cancel-body-${round}`
      const response = await client.stream(harness.request({ id, chunks: 5, stallAfter: 2 }))
      const reader = response.body!.getReader()
      await reader.read()
      await harness.upstream.waitFor(id, (record) => record.chunksWritten === 2)
      const cancelledAt = sharedNow()
      await reader.cancel('gone')
      return (await harness.upstream.waitForClosed(id)).closedAt! - cancelledAt
    })
    expect(delay).toBeLessThan(CANCEL_BOUND_MS)
    await client.idle()
    expect(client.log.at(-1)).toMatchObject({ type: 'end', outcome: 'disconnect' })
  })

  test('aborting while the upstream has not sent its headers aborts the fetch at once', async () => {
    const client = harness.client()
    const delay = await fastestOf(3, async (round) => {
      const id = `cancel-headers-${round}`
      const controller = new AbortController()
      const pending = client.stream(harness.request({ id, headerDelay: 5_000 }), { signal: controller.signal })
      await harness.upstream.waitFor(id, () => true)
      const abortedAt = sharedNow()
      controller.abort(new Error('client left early'))
      await expect(pending).rejects.toThrow('client left early')
      return (await harness.upstream.waitForClosed(id)).closedAt! - abortedAt
    })
    expect(delay).toBeLessThan(CANCEL_BOUND_MS)
  })

  test('aborting while queued leaves the queue: the permit is never taken', async () => {
    const client = harness.client({ streamWeight: 2 })
    const holder = await harness.semaphore.acquire(harness.semaphore.capacity)
    const controller = new AbortController()
    const pending = client.stream(harness.request({ id: 'cancel-queued' }), { signal: controller.signal })
    // In a worker pool the call reaches the semaphore, and the abort reaches the call, one message later.
    if (RUNNER === 'pool') await vi.waitFor(() => expect(harness.semaphore.waiting).toBe(1), WAIT)
    expect(harness.semaphore.waiting).toBe(1)
    controller.abort(new Error('bored'))
    await expect(pending).rejects.toThrow('bored')
    if (RUNNER === 'pool') await vi.waitFor(() => expect(harness.semaphore.waiting).toBe(0), WAIT)
    expect(harness.semaphore.waiting).toBe(0)
    holder.release()
    expect(harness.semaphore.available).toBe(harness.semaphore.capacity)
    expect(harness.upstream.attempts('cancel-queued')).toHaveLength(0)
    await client.idle()
    expect(client.log.map((event) => event.type)).toEqual(['start', 'disconnect', 'end'])
  })
})

describe('queue timeout', () => {
  test('permits exhausted: rejects with a 503 QueueTimeoutError within a band, nothing sent upstream', async () => {
    const client = harness.client({ queueTimeoutMs: 200, queueRetryAfterMs: 2_000 })
    const holder = await harness.semaphore.acquire(harness.semaphore.capacity)
    await client.ready
    const started = performance.now()
    const error = await client.stream(harness.request({ id: 'queue-timeout' })).catch((e: unknown) => e)
    const elapsed = performance.now() - started
    holder.release()
    expect(error).toBeInstanceOf(QueueTimeoutError)
    expect(error).toMatchObject({ code: 'ERR_QUEUE_TIMEOUT', status: 503, retryAfterMs: 2_000, timeoutMs: 200 })
    expect(elapsed).toBeGreaterThanOrEqual(195)
    expect(elapsed).toBeLessThan(450)
    expect(harness.upstream.attempts('queue-timeout')).toHaveLength(0)
  })

  test('covers the wait for response headers, and aborts that request', async () => {
    // The budget leaves room for a cold worker's first fetch (lazy undici load) on a loaded machine; the upstream
    // withholds its headers 6× longer, so only the queue timeout can end the wait.
    const client = harness.client({ queueTimeoutMs: 1_000 })
    await client.ready
    const started = performance.now()
    const error = await client.stream(harness.request({ id: 'slow-headers', headerDelay: 6_000 })).catch((e: unknown) =>
      e
    )
    expect(performance.now() - started).toBeGreaterThanOrEqual(990)
    expect(performance.now() - started).toBeLessThan(3_000)
    expect(error).toBeInstanceOf(QueueTimeoutError)
    expect((await harness.upstream.waitForClosed('slow-headers')).outcome).toBe('aborted')
  })

  test('a stream that waited most of its budget in the queue still streams past it', async () => {
    const client = harness.client({ queueTimeoutMs: 800, streamWeight: harness.semaphore.capacity })
    // The second call queues ~300 ms behind the first, then streams for ~900 ms: beyond its 800 ms budget.
    const first = await client.stream(harness.request({ id: 'first', chunks: 5, delay: 50 }))
    const second = client.stream(harness.request({ id: 'second', chunks: 14, delay: 60 }))
    await readSse(first)
    const read = await readSse(await second)
    expect(read.error).toBeUndefined()
    expect(read.events.at(-1)!.data).toBe('[DONE]')
  })
})

describe('weights', () => {
  test('streams and buffered calls share one semaphore with their own weights', async () => {
    const client = harness.client({ streamWeight: 4, bufferedWeight: 2, queueTimeoutMs: 500 })
    const controller = new AbortController()
    const response = await client.stream(harness.request({ id: 'weighted', chunks: 3, stallAfter: 1 }), {
      signal: controller.signal,
    })
    expect(harness.semaphore.available).toBe(harness.semaphore.capacity - 4)
    // 2 left: a buffered call (weight 2) fits, a second stream (weight 4) does not.
    expect((await client.complete(harness.request({ id: 'weighted-buffered' }, false))).status).toBe(200)
    await expect(client.stream(harness.request({ id: 'weighted-second' }))).rejects.toBeInstanceOf(QueueTimeoutError)
    controller.abort()
    await response.body!.cancel().catch(() => {})
  })

  test('buffered calls can have a semaphore of their own', async () => {
    const buffered = new SharedSemaphore({ capacity: 1 })
    const client = harness.client({ streamWeight: harness.semaphore.capacity, bufferedSemaphore: buffered })
    const response = await client.stream(harness.request({ id: 'own-stream', chunks: 3, stallAfter: 1, stallMs: 100 }))
    expect(harness.semaphore.available).toBe(0)
    const json = await client.complete(harness.request({ id: 'own-buffered' }, false))
    expect(json.status).toBe(200)
    expect(buffered.available).toBe(1)
    await readSse(response)
  })
})

describe('backpressure', () => {
  test('a client that stops reading pauses the upstream; bytes in flight stay bounded', async () => {
    const client = harness.client({ idleTimeoutMs: 0 })
    const response = await client.stream(harness.request({ id: 'slow-reader', chunks: 200_000, pad: 1_000 }))
    const reader = response.body!.getReader()
    let received = (await reader.read()).value!.byteLength
    const record = await harness.upstream.waitFor('slow-reader', (r) => r.paused)
    // Without backpressure ~200 MB would be written; kernel and runtime buffers hold a few MiB.
    const { bytesWritten, drainWaits } = record
    expect(bytesWritten).toBeLessThan(32 * 1024 * 1024)
    // Reading a little resumes it, and it pauses again with the same bound on bytes in flight.
    while (received < bytesWritten) received += (await reader.read()).value!.byteLength
    await harness.upstream.waitFor('slow-reader', (r) => r.paused && r.drainWaits > drainWaits)
    expect(record.bytesWritten - received).toBeLessThan(32 * 1024 * 1024)
    await reader.cancel()
    expect((await harness.upstream.waitForClosed('slow-reader')).outcome).toBe('aborted')
  })
})

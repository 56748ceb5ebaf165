// The worker pool beyond the in-process contract (which the `pool` vitest project checks by running the
// streaming-call scenarios through it): options, transforms in workers vs in-process, usage, a worker killed or
// exiting mid-stream under load, a stuck worker, the queue deadline in piscina's queue, and close().
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest'
import { SharedRateLimiter } from '../core/rate-limiter.ts'
import { SharedSemaphore } from '../core/semaphore.ts'
import type { StreamEvent } from '../core/telemetry/events.ts'
import { createStreamTelemetry } from '../core/telemetry/stream-telemetry.ts'
import { PoolClosedError, WorkerCrashedError } from '../core/pool/pool-errors.ts'
import { createStreamRunner, type ManagedStreamRunner } from '../core/pool/stream-runner.ts'
import { createWorkerPool, type WorkerPool } from '../core/pool/worker-pool.ts'
import { QueueTimeoutError } from '../core/upstream/errors.ts'
import { expectedContent } from './upstream/behaviour.ts'
import { contentOf, errorOf, readSse, useHarness } from './upstream/harness.ts'

const harness = useHarness()
const MARKERS = new URL('./fixtures/transforms/markers.ts', import.meta.url)
const EXAMPLE = new URL('../examples/redact-transform.ts', import.meta.url)
/** Polling bound for a pool to reach a state (worker startup on a loaded 2-core machine included). */
const WAIT = { timeout: 20_000, interval: 10 }

interface Rig {
  semaphore: SharedSemaphore
  log: StreamEvent[]
  pool: WorkerPool
}

function rig(options: Partial<Parameters<typeof createWorkerPool>[0]> = {}, capacity = 40): Rig {
  const semaphore = new SharedSemaphore({ capacity })
  const telemetry = createStreamTelemetry()
  const log: StreamEvent[] = []
  telemetry.events.on('event', (event) => log.push(event))
  const pool = createWorkerPool({
    semaphore,
    workers: 2,
    telemetry,
    retry: { baseDelayMs: 5, maxDelayMs: 20 },
    transform: MARKERS,
    ...options,
  })
  return { semaphore, log, pool }
}

/**
 * Resolves once `dead` is out of `pool.threads` and a replacement is in. A stream can see its worker's death (the
 * port closing) before piscina has processed that worker's 'exit'; a call made in between would go to the dying
 * worker and fail with it, so tests that go on after a death wait for the replacement first.
 */
async function replaced(pool: WorkerPool, dead: number, workers: number): Promise<void> {
  await vi.waitFor(() => {
    const ids = pool.threads.map((thread) => thread.threadId)
    expect(ids).not.toContain(dead)
    expect(ids).toHaveLength(workers)
  }, WAIT)
}

/** Resolves once every call has ended, then checks the books are balanced. */
async function balanced({ pool, semaphore, log }: Rig): Promise<void> {
  await vi.waitFor(() => expect(pool.active).toBe(0), WAIT)
  expect(semaphore.available).toBe(semaphore.capacity)
  expect(semaphore.waiting).toBe(0)
  expect(log.filter((event) => event.type === 'end')).toHaveLength(log.filter((event) => event.type === 'start').length)
}

describe('options', () => {
  test('are validated once, with the option name and value', () => {
    const semaphore = new SharedSemaphore({ capacity: 1 })
    expect(() => createStreamRunner({ semaphore, workers: -1 })).toThrow(
      'Expected `workers` to be a non-negative integer, got `-1` (number)',
    )
    expect(() => createWorkerPool({ semaphore, workers: 1, streamsPerWorker: 0 })).toThrow(
      'Expected `streamsPerWorker` to be a positive integer, got `0` (number)',
    )
    expect(() => createWorkerPool({ semaphore, workers: 1, fetch: globalThis.fetch })).toThrow(
      /Expected `fetch` to be undefined with `workers` > 0 \(functions cannot cross threads: use `fetchModule`/,
    )
    expect(() => createWorkerPool({ semaphore, workers: 1, onEvent: () => {} })).toThrow(/use a `transform` module/)
    expect(() => createWorkerPool({ semaphore, workers: 1, retry: { random: Math.random } })).toThrow(
      /Expected `retry.random` to be undefined/,
    )
    const local = { acquire: () => Promise.resolve({ release() {} }) }
    expect(() => createWorkerPool({ semaphore: local as unknown as SharedSemaphore, workers: 1 })).toThrow(
      /Expected `semaphore` to be a SharedSemaphore with `workers` > 0/,
    )
    expect(() => createWorkerPool({ semaphore, workers: 1, queueTimeoutMs: 0 })).toThrow(
      'Expected `queueTimeoutMs` to be a finite number of milliseconds > 0, got `0` (number)',
    )
    expect(() => createWorkerPool({ semaphore, workers: 1, transform: '' })).toThrow(
      'Expected `transform` to be a module path or URL, got `` (string)',
    )
    expect(() => createStreamRunner({ semaphore, workers: 0, upstream: 'other' as 'demo' })).toThrow(
      'Expected `upstream` to be `demo` or undefined, got `other` (string)',
    )
  })

  test('a transform module without a default function: `ready` and every call reject with its error', async () => {
    const semaphore = new SharedSemaphore({ capacity: 2 })
    const notAFactory = new URL('./fixtures/transforms/not-a-factory.ts', import.meta.url)
    for (const workers of [0, 1]) {
      const runner = createStreamRunner({ semaphore, workers, transform: notAFactory })
      await expect(runner.ready).rejects.toThrow(/to export a default function, got object/)
      await expect(runner.stream(harness.request({ id: `bad-transform-${workers}` }))).rejects.toThrow(
        /to export a default function/,
      )
      await runner.close()
      expect(runner.active).toBe(0)
    }
    expect(semaphore.available).toBe(2)
  })
})

describe('transforms and usage', () => {
  let both: { label: string; runner: ManagedStreamRunner; log: StreamEvent[] }[]
  const semaphore = new SharedSemaphore({ capacity: 8 })
  beforeAll(() => {
    both = [0, 2].map((workers) => {
      const telemetry = createStreamTelemetry()
      const log: StreamEvent[] = []
      telemetry.events.on('event', (event) => log.push(event))
      const runner = createStreamRunner({ semaphore, workers, transform: MARKERS, telemetry })
      return { label: `workers: ${workers}`, runner, log }
    })
  })
  afterAll(async () => {
    await Promise.all(both.map(({ runner }) => runner.close()))
    expect(semaphore.available).toBe(8)
  })

  test('redaction rewrites content; workers: 0 and workers: 2 give byte-identical output', async () => {
    const texts: string[] = []
    for (const { runner, log } of both) {
      const id = `redact-${texts.length}`
      const read = await readSse(await runner.stream(harness.request({ id, chunks: 12, eventsPerWrite: 3 }), { id }))
      expect(contentOf(read.events)).toBe(expectedContent(12).replace(/\d/g, '•'))
      expect(read.events.at(-1)!.data).toBe('[DONE]')
      // Same bytes once the per-request id and timestamp are normalised.
      texts.push(read.text.replaceAll(id, 'ID').replace(/"created":\d+/g, '"created":0'))
      await vi.waitFor(() => expect(log.at(-1)?.type).toBe('end'), WAIT)
      // Usage is counted before the transform: what the upstream sent (its own usage object here).
      expect(log.at(-1)).toMatchObject({
        id,
        outcome: 'completed',
        events: 1 + 12 + 1,
        usage: { source: 'upstream', completionTokens: 12, promptTokens: 3, totalTokens: 15 },
      })
    }
    expect(texts[1]).toBe(texts[0])
  })

  test('a throwing transform ends the stream with an error event and leaks nothing, in both modes', async () => {
    for (const { runner } of both) {
      const id = `throw-${runner === both[0]!.runner ? 0 : 2}`
      const read = await readSse(await runner.stream(harness.request({ id, chunks: 10, stallAfter: 5 })))
      expect(read.error).toBeUndefined()
      expect(read.events).toHaveLength(2 + 1)
      expect(errorOf(read.events)).toEqual({
        message: 'Internal error while streaming',
        type: 'server_error',
        code: 'internal_error',
      })
      expect((await harness.upstream.waitForClosed(id)).outcome).toBe('aborted')
      await vi.waitFor(() => expect(runner.active).toBe(0), WAIT)
    }
    expect(semaphore.available).toBe(8)
  })

  test('usage is counted from content deltas when the upstream sends none (a demo upstream per worker)', async () => {
    const telemetry = createStreamTelemetry()
    const ends: StreamEvent[] = []
    telemetry.events.on('end', (event) => ends.push(event))
    const demo = { timeToFirstTokenMs: 0, interTokenMs: 0, maxTokens: 7 }
    const pool = createStreamRunner({ semaphore, workers: 1, upstream: 'demo', demo, telemetry })
    try {
      const body = JSON.stringify({ stream: true, messages: [{ role: 'user', content: 'hi' }] })
      const request = { url: 'http://demo.invalid/v1/chat/completions', body }
      const read = await readSse(await pool.stream(request))
      expect(read.events.at(-1)!.data).toBe('[DONE]')
      expect(read.events).toHaveLength(1 + 7 + 1 + 1)
      await vi.waitFor(() => expect(ends).toHaveLength(1), WAIT)
      expect(ends[0]).toMatchObject({ usage: { source: 'counted', completionTokens: 7, promptTokens: undefined } })
    } finally {
      await pool.close()
    }
  })
})

describe('a worker that dies or hangs', () => {
  test('killed mid-stream under load: its streams get an error event, others complete, permits return', async () => {
    const setup = rig()
    const { pool, log } = setup
    try {
      await pool.ready
      const before = pool.threads.map((thread) => thread.threadId)
      const streams = await Promise.all(
        Array.from(
          { length: 20 },
          (_, i) => pool.stream(harness.request({ id: `load-${i}`, chunks: 6, stallAfter: 2, stallMs: 1_500 })),
        ),
      )
      // Every stream has its first bytes before the kill: the failure is mid-stream for every affected one.
      const readers = streams.map((response) => response.body!.getReader())
      const firsts = await Promise.all(readers.map((reader) => reader.read()))
      expect(firsts.every((first) => first.done === false)).toBe(true)
      const decoder = new TextDecoder()
      const firstTexts = firsts.map((first) => decoder.decode(first.value))
      const victim = pool.threads[0]!
      await victim.terminate()
      for (const reader of readers) reader.releaseLock()
      // The whole text of each stream: its first chunk and the rest.
      const reads = await Promise.all(
        streams.map(async (response, i) => {
          const rest = await readSse(response)
          return readSse(new Response(firstTexts[i]! + rest.text))
        }),
      )
      const failed = reads.filter((read) => errorOf(read.events) !== undefined)
      const completed = reads.filter((read) => read.events.at(-1)?.data === '[DONE]')
      expect(failed.length + completed.length).toBe(20)
      expect(failed.length).toBeGreaterThan(0)
      expect(completed.length).toBeGreaterThan(0)
      for (const read of failed) {
        expect(read.error).toBeUndefined()
        expect(read.text).not.toContain('[DONE]')
        expect(errorOf(read.events)).toMatchObject({ code: 'worker_crashed', type: 'server_error' })
      }
      for (const read of completed) expect(contentOf(read.events)).toBe(expectedContent(6))
      await balanced(setup)
      const crashed = log.filter((event) => event.type === 'error')
      expect(crashed).toHaveLength(failed.length)
      for (const event of crashed) expect(event).toMatchObject({ code: 'ERR_WORKER_CRASHED', afterFirstChunk: true })
      // Replaced, and the new worker serves.
      await replaced(pool, before[0]!, 2)
      const again = await Promise.all(
        Array.from(
          { length: 6 },
          (_, i) => pool.stream(harness.request({ id: `after-${i}`, chunks: 3 })).then(readSse),
        ),
      )
      for (const read of again) expect(contentOf(read.events)).toBe(expectedContent(3))
      await balanced(setup)
    } finally {
      await pool.close()
    }
  })

  test('process.exit() in a transform mid-stream: an error event; dying before the answer: re-sent once', async () => {
    const setup = rig({ workers: 1, queueTimeoutMs: 20_000 })
    const { pool, log } = setup
    try {
      await pool.ready
      const first = pool.threads[0]!.threadId
      const read = await readSse(await pool.stream(harness.request({ id: 'exit-1', chunks: 6, delay: 20 })))
      // What came before the fatal event (writes 20 ms apart; one merged into its TCP segment is not forwarded).
      const content = contentOf(read.events)
      expect(expectedContent(2).startsWith(content)).toBe(true)
      expect(read.text).not.toContain('[DONE]')
      expect(errorOf(read.events)).toMatchObject({ code: 'worker_crashed' })
      await replaced(pool, first, 1)
      const second = pool.threads[0]!.threadId
      // Dying while the upstream has not answered yet: nothing reached the caller, so the call is re-sent to the
      // replacement worker (like a connection lost before the first byte), and the caller sees one whole stream.
      const request = harness.request({ id: 'headers-crash', headerDelay: 300, chunks: 3 })
      const resent = pool.stream(request, { id: 'headers-crash' })
      await harness.upstream.waitFor('headers-crash', () => true)
      await pool.threads[0]!.terminate()
      const whole = await readSse(await resent)
      expect(contentOf(whole.events)).toBe(expectedContent(3))
      expect(whole.events.at(-1)?.data).toBe('[DONE]')
      const [lost, answered] = harness.upstream.attempts('headers-crash')
      expect(lost).toMatchObject({ outcome: 'aborted' })
      expect(answered).toMatchObject({ attempt: 2 })
      // One call in the books: one start, a retry naming the crash, the second worker's attempt numbered 2.
      const ofCall = log.filter((event) => event.id === 'headers-crash')
      expect(ofCall.filter((event) => event.type === 'start')).toHaveLength(1)
      expect(ofCall.find((event) => event.type === 'retry')).toMatchObject({ reason: 'ERR_WORKER_CRASHED', attempt: 1 })
      expect(ofCall.find((event) => event.type === 'acquire' && event.attempt === 2)).toBeDefined()
      expect(ofCall.at(-1)).toMatchObject({ type: 'end', outcome: 'completed', attempts: 2 })
      await replaced(pool, second, 1)
      // Once only: a call whose second worker dies before the answer too rejects like an unreachable upstream.
      const third = pool.threads[0]!.threadId
      const twice = pool.stream(harness.request({ id: 'crash-twice', headerDelay: 5_000 }))
      await harness.upstream.waitFor('crash-twice', () => true)
      await pool.threads[0]!.terminate()
      await harness.upstream.waitFor('crash-twice', (record) => record.attempt === 2)
      await replaced(pool, third, 1)
      const fourth = pool.threads[0]!.threadId
      await pool.threads[0]!.terminate()
      const early = await twice.catch((error: unknown) => error)
      expect(early).toBeInstanceOf(WorkerCrashedError)
      expect(early).toMatchObject({ status: 502, code: 'ERR_WORKER_CRASHED' })
      await vi.waitFor(() => {
        expect(harness.upstream.attempts('crash-twice').map((record) => record.outcome)).toEqual(['aborted', 'aborted'])
      }, WAIT)
      await replaced(pool, fourth, 1)
      const fine = await readSse(await pool.stream(harness.request({ id: 'after-exit', chunks: 3 })))
      expect(contentOf(fine.events)).toBe(expectedContent(3))
      await balanced(setup)
    } finally {
      await pool.close()
    }
  })

  test('a worker stuck in a busy loop is terminated after workerStallTimeoutMs; its stream ends', async () => {
    const setup = rig({ workers: 1, workerStallTimeoutMs: 400 })
    const { pool, log } = setup
    try {
      await pool.ready
      const stuck = pool.threads[0]!.threadId
      const started = performance.now()
      const read = await readSse(await pool.stream(harness.request({ id: 'spin-1', chunks: 6, delay: 20 })))
      const elapsed = performance.now() - started
      expect(expectedContent(1).startsWith(contentOf(read.events))).toBe(true)
      expect(read.text).not.toContain('[DONE]')
      expect(errorOf(read.events)).toMatchObject({ code: 'worker_crashed' })
      expect(elapsed).toBeGreaterThanOrEqual(400)
      expect(elapsed).toBeLessThan(10_000)
      await balanced(setup)
      expect(log.find((event) => event.type === 'error')).toMatchObject({
        message: expect.stringMatching(/stopped answering for 400 ms/),
      })
      await replaced(pool, stuck, 1)
      const fine = await readSse(await pool.stream(harness.request({ id: 'after-spin', chunks: 3 })))
      expect(contentOf(fine.events)).toBe(expectedContent(3))
    } finally {
      await pool.close()
    }
  })
})

describe('queueing and shared limits', () => {
  test('a call waiting in piscina’s queue (all workers busy) gets the queue timeout, not the upstream', async () => {
    const setup = rig({ workers: 1, streamsPerWorker: 1, queueTimeoutMs: 300, transform: undefined })
    const { pool } = setup
    try {
      await pool.ready
      const first = await pool.stream(harness.request({ id: 'holds-worker', chunks: 3, stallAfter: 1, stallMs: 1_000 }))
      const started = performance.now()
      const error = await pool.stream(harness.request({ id: 'queued-in-piscina' })).catch((e: unknown) => e)
      const elapsed = performance.now() - started
      expect(error).toBeInstanceOf(QueueTimeoutError)
      expect(error).toMatchObject({ status: 503, code: 'ERR_QUEUE_TIMEOUT' })
      expect(elapsed).toBeGreaterThanOrEqual(295)
      expect(elapsed).toBeLessThan(1_000)
      expect(contentOf((await readSse(first)).events)).toBe(expectedContent(3))
      await balanced(setup)
      expect(harness.upstream.attempts('queued-in-piscina')).toHaveLength(0)
    } finally {
      await pool.close()
    }
  })

  test('a call re-sent after its worker died keeps its attempts and only what is left of its budget', async () => {
    // Every attempt waits 1.2 s for its headers; the first gets a 503. The worker dies during the second (at about
    // 1.3 s): resumed with what is left of 2 s, the third attempt cannot get its headers in time; with a fresh
    // budget it would (1.3 + 1.2 < 1.3 + 2). Told apart by the outcome, not by timing.
    const setup = rig({ workers: 1, queueTimeoutMs: 2_000, transform: undefined })
    const { pool, log } = setup
    try {
      await pool.ready
      const dying = pool.threads[0]!.threadId
      const request = harness.request({ id: 'resumed', headerDelay: 1_200, fail: 503, failTimes: 1, retryAfterMs: 50 })
      const pending = pool.stream(request, { id: 'resumed' })
      await harness.upstream.waitFor('resumed', (record) => record.attempt === 2)
      await pool.threads[0]!.terminate()
      await replaced(pool, dying, 1)
      const error = await pending.catch((e: unknown) => e)
      expect(error).toBeInstanceOf(QueueTimeoutError)
      expect(error).toMatchObject({ status: 503 })
      const attempts = harness.upstream.attempts('resumed')
      // The third attempt, numbered on, if the new worker got to make it before the budget ran out.
      expect(attempts.length === 2 || attempts[2]?.attempt === 3).toBe(true)
      // Numbered on in the books too (the third one's `acquire` is missing when main's deadline ended the call first).
      const acquired = log.filter((event) => event.id === 'resumed' && event.type === 'acquire')
      expect(acquired.length).toBeGreaterThanOrEqual(2)
      expect(acquired.map((event) => (event as { attempt: number }).attempt)).toEqual(
        acquired.map((_, index) => index + 1),
      )
      expect(log.filter((event) => event.id === 'resumed' && event.type === 'end')).toHaveLength(1)
      await vi.waitFor(() => {
        expect(harness.upstream.attempts('resumed').every((record) => record.closedAt !== undefined)).toBe(true)
      }, WAIT)
      await balanced(setup)
    } finally {
      await pool.close()
    }
  })

  test('one semaphore and one rate limiter for every worker', async () => {
    const rateLimiter = new SharedRateLimiter({ rate: 4, per: 60_000 })
    const setup = rig({ rateLimiter, queueTimeoutMs: 1_000, transform: undefined }, 3)
    const { pool, semaphore } = setup
    try {
      const held = await Promise.all(
        Array.from(
          { length: 3 },
          (_, i) => pool.stream(harness.request({ id: `shared-${i}`, chunks: 2, stallAfter: 1, stallMs: 300 })),
        ),
      )
      expect(semaphore.available).toBe(0)
      await Promise.all(held.map((response) => readSse(response)))
      await balanced(setup)
      // 3 tokens spent by three workers' calls; one left, then the bucket is empty for all of them.
      await readSse(await pool.stream(harness.request({ id: 'shared-4', chunks: 1 })))
      const starved = await pool.stream(harness.request({ id: 'shared-5' })).catch((e: unknown) => e)
      expect(starved).toBeInstanceOf(QueueTimeoutError)
      expect((starved as QueueTimeoutError).retryAfterMs).toBeGreaterThan(10_000)
      await balanced(setup)
    } finally {
      await pool.close()
    }
  })
})

describe('close()', () => {
  test('waits for live streams up to the deadline, then ends them with the shutdown error event', async () => {
    const setup = rig({ transform: undefined })
    const { pool } = setup
    const quick = await pool.stream(harness.request({ id: 'close-quick', chunks: 4, delay: 40 }))
    const slow = await pool.stream(harness.request({ id: 'close-slow', chunks: 4, stallAfter: 1, stallMs: 10_000 }))
    const reads = [readSse(quick), readSse(slow)]
    const started = performance.now()
    await pool.close({ timeoutMs: 500 })
    const elapsed = performance.now() - started
    const [quickRead, slowRead] = await Promise.all(reads)
    expect(quickRead!.events.at(-1)!.data).toBe('[DONE]')
    expect(contentOf(slowRead!.events)).toBe(expectedContent(1))
    expect(errorOf(slowRead!.events)).toMatchObject({ code: 'closed', type: 'server_error' })
    expect(elapsed).toBeGreaterThanOrEqual(490)
    expect(elapsed).toBeLessThan(5_000)
    expect((await harness.upstream.waitForClosed('close-slow')).outcome).toBe('aborted')
    expect(pool.threads).toHaveLength(0)
    await expect(pool.stream(harness.request({ id: 'after-close' }))).rejects.toBeInstanceOf(PoolClosedError)
    await balanced(setup)
  })
})

// The chunk channel across a real worker thread, on whichever runtime runs this file (node via tsx, bun, deno).
// Each case returns plain findings; test/chunk-channel.test.ts asserts on them. Cases run one after the other
// on one worker (plus throwaway workers for the kill cases), each under its own time limit so a hang shows up
// as `{ error: 'timeout …' }` instead of a missing verdict.
import { MessageChannel, type Worker } from 'node:worker_threads'
import process from 'node:process'
import { setImmediate } from 'node:timers'
import { sharedNow } from '../../core/clock.ts'
import { SluiceError } from '../../core/errors.ts'
import { type ChunkLink, type ChunkReader, ChunkReaderHub } from '../../core/pool/chunk-channel.ts'
import { kSentBytes, runtimeName, seededChunks, spawnTsWorker } from './chunk-channel-fixtures.ts'
import { runMain } from './_verdict.ts'

const WORKER_URL = new URL('./workers/chunk-channel-producer.ts', import.meta.url)

interface Report {
  kind: 'report'
  name: string
  [field: string]: unknown
}

/** A worker running the producer script, its link, and a queue of its reports by name. */
class Producer {
  readonly worker: Worker
  readonly link: ChunkLink
  readonly shared = new Int32Array(new SharedArrayBuffer(4))
  readonly #reports = new Map<string, Report[]>()
  readonly #waiters = new Map<string, (report: Report) => void>()

  constructor(hub: ChunkReaderHub) {
    this.worker = spawnTsWorker(WORKER_URL)
    const { port1, port2 } = new MessageChannel()
    this.link = hub.attach(port1)
    this.worker.on('message', (message: Report) => {
      const waiter = this.#waiters.get(message.name)
      if (waiter === undefined) return void this.#queue(message.name).push(message)
      this.#waiters.delete(message.name)
      waiter(message)
    })
    this.worker.postMessage({ kind: 'init', port: port2, shared: this.shared.buffer }, [port2])
  }

  /** The next report called `name` (already received or still to come). */
  next(name: string): Promise<Report> {
    const queued = this.#queue(name).shift()
    if (queued !== undefined) return Promise.resolve(queued)
    return new Promise((resolve) => this.#waiters.set(name, resolve))
  }

  run(name: string, reader: ChunkReader, params: Record<string, number> = {}): void {
    this.worker.postMessage({ kind: 'run', name, handle: reader.handle, params })
  }

  #queue(name: string): Report[] {
    let queue = this.#reports.get(name)
    if (queue === undefined) this.#reports.set(name, queue = [])
    return queue
  }
}

const macrotask = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

function describe(reason: unknown): Record<string, unknown> {
  const error = reason as { name?: unknown; message?: unknown; code?: unknown; status?: unknown; cause?: unknown }
  return { name: error?.name, message: error?.message, code: error?.code, status: error?.status }
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<{ chunks: Uint8Array[]; bytes: number }> {
  const chunks: Uint8Array[] = []
  let bytes = 0
  for await (const chunk of stream) {
    chunks.push(chunk)
    bytes += chunk.byteLength
  }
  return { chunks, bytes }
}

/** First byte offset where `chunks` differs from the seeded stream, or -1 when identical (sizes included). */
function compareWithSeed(chunks: Uint8Array[], seed: number, count: number, maxSize: number): number {
  const expected = concat([...seededChunks(seed, count, maxSize)])
  const actual = concat(chunks)
  const length = Math.min(expected.length, actual.length)
  for (let i = 0; i < length; i++) if (expected[i] !== actual[i]) return i
  return expected.length === actual.length ? -1 : length
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.byteLength, 0))
  let offset = 0
  for (const chunk of chunks) {
    out.set(chunk, offset)
    offset += chunk.byteLength
  }
  return out
}

const text = (chunks: Uint8Array[]): string => new TextDecoder().decode(concat(chunks))

type Case = (hub: ChunkReaderHub, producer: Producer) => Promise<Record<string, unknown>>

const cases: Record<string, Case> = {
  async integrity(hub, producer) {
    const params = { seed: 42, count: 2000, maxSize: 16_384, eventEvery: 7 }
    const events: Array<{ type: string; bytesBefore: number; receivedAtArrival: number }> = []
    const reader: ChunkReader = hub.open({
      onEvent: (event) =>
        events.push({ ...(event as { type: string; bytesBefore: number }), receivedAtArrival: reader.receivedBytes }),
    })
    producer.run('seeded', reader, params)
    const { chunks, bytes } = await readAll(reader.stream)
    return {
      bytes,
      mismatchAt: compareWithSeed(chunks, params.seed, params.count, params.maxSize),
      events: events.length,
      eventsInOrder: events.every((event) => event.bytesBefore === event.receivedAtArrival),
      lastEvent: events.at(-1)?.type,
    }
  },

  async multiplex(hub, producer) {
    const streams = 50
    const params = { count: 200, maxSize: 300, eventEvery: 0 }
    const before = producer.link.messagesReceived
    const results = await Promise.all(
      Array.from({ length: streams }, async (_, index) => {
        const reader = hub.open()
        producer.run('seeded', reader, { ...params, seed: 1000 + index })
        const { chunks } = await readAll(reader.stream)
        return compareWithSeed(chunks, 1000 + index, params.count, params.maxSize)
      }),
    )
    return {
      streams,
      chunksWritten: streams * params.count,
      allIntact: results.every((mismatch) => mismatch === -1),
      messages: producer.link.messagesReceived - before,
    }
  },

  async batching(hub, producer) {
    const runs: Record<string, unknown> = {}
    for (const window of [1 << 20, 4096]) {
      const before = producer.link.messagesReceived
      const reader = hub.open({ window })
      producer.run('burst', reader, { count: 1000, size: 64 })
      const { chunks, bytes } = await readAll(reader.stream)
      runs[`window${window}`] = {
        chunksWritten: 1000,
        bytes,
        reads: chunks.length,
        messages: producer.link.messagesReceived - before,
      }
    }
    return runs
  },

  async lone(hub, producer) {
    const reader = hub.open()
    producer.run('trickle', reader, { count: 5 })
    const streamReader = reader.stream.getReader()
    const latenciesMs: number[] = []
    for (let i = 0; i < 5; i++) {
      const start = sharedNow()
      producer.worker.postMessage({ kind: 'next' })
      const { value } = await streamReader.read()
      latenciesMs.push(sharedNow() - start)
      if (new TextDecoder().decode(value) !== `data: ${i}\n\n`) return { error: `chunk ${i} was ${String(value)}` }
    }
    const { done } = await streamReader.read()
    return { maxLatencyMs: Math.max(...latenciesMs), done }
  },

  async credit(hub, producer) {
    const window = 4096
    const total = 100_000
    const reader = hub.open({ window })
    producer.run('credit', reader, { chunkSize: 1000, total })
    const blocked = await producer.next('blocked')
    // A full round trip through the worker's event loop: had it any credit left, it would have used it.
    producer.worker.postMessage({ kind: 'ping' })
    const pong = await producer.next('pong')
    const streamReader = reader.stream.getReader()
    let consumed = 0
    let maxInFlight = 0
    for (;;) {
      const { value, done } = await streamReader.read()
      if (done) break
      consumed += value.byteLength
      // Give the worker a turn to use any credit this read granted, then look at what it has sent.
      await macrotask()
      producer.worker.postMessage({ kind: 'ping' })
      await producer.next('pong')
      maxInFlight = Math.max(maxInFlight, Atomics.load(producer.shared, kSentBytes) - consumed)
    }
    const finished = await producer.next('credit-done')
    return {
      window,
      total,
      consumed,
      blockedSentBytes: blocked.sentBytes,
      sentAfterRoundTrip: pong.sentBytes,
      maxInFlight,
      sentBytes: finished.sentBytes,
    }
  },

  async cancelBlocked(hub, producer) {
    const reader = hub.open({ window: 2048 })
    producer.run('credit', reader, { chunkSize: 1000, total: 1 << 30 })
    await producer.next('blocked')
    const start = sharedNow()
    await reader.stream.cancel(Object.assign(new Error('client went away'), { code: 'ERR_CLIENT_GONE' }))
    const cancelled = await producer.next('cancelled')
    return { latencyMs: (cancelled.at as number) - start, ...cancelled, openStreams: hub.openStreams }
  },

  async cancelStalled(hub, producer) {
    const reader = hub.open()
    producer.run('stall', reader)
    const streamReader = reader.stream.getReader()
    const first = await streamReader.read()
    const start = sharedNow()
    await streamReader.cancel()
    const cancelled = await producer.next('stall-cancelled')
    return {
      firstChunk: text([first.value!]),
      latencyMs: (cancelled.at as number) - start,
      reason: cancelled.reason,
      openStreams: hub.openStreams,
    }
  },

  async earlyCancel(hub, producer) {
    const reader = hub.open()
    await reader.stream.cancel(new Error('gave up while queued'))
    producer.run('early', reader)
    const cancelled = await producer.next('early-cancelled')
    return {
      latencyMs: (cancelled.at as number) - (cancelled.openedAt as number),
      reason: cancelled.reason,
      openStreams: hub.openStreams,
    }
  },

  async producerError(hub, producer) {
    const reader = hub.open()
    producer.run('fail', reader, { chunks: 3 })
    const streamReader = reader.stream.getReader()
    const chunks: Uint8Array[] = []
    try {
      for (;;) {
        const { value, done } = await streamReader.read()
        if (done) return { error: 'stream closed instead of erroring' }
        chunks.push(value)
      }
    } catch (error) {
      return { dataBeforeError: text(chunks), error: describe(error), openStreams: hub.openStreams }
    }
  },

  async readerFail(hub, producer) {
    const reader = hub.open({ window: 2048 })
    producer.run('credit', reader, { chunkSize: 1000, total: 1 << 30 })
    const blocked = await producer.next('blocked')
    // The report overtakes the data (another port): wait until the window's bytes are queued here.
    while (reader.receivedBytes < (blocked.sentBytes as number)) await macrotask()
    reader.fail(new SluiceError('ERR_IDLE_TIMEOUT', 'no chunk for 30000 ms'))
    const cancelled = await producer.next('cancelled')
    let bytesBeforeError = 0
    try {
      for await (const chunk of reader.stream) bytesBeforeError += chunk.byteLength
      return { error: 'stream closed instead of erroring' }
    } catch (error) {
      return {
        bytesBeforeError,
        consumerError: describe(error),
        producerReason: cancelled.reason,
        openStreams: hub.openStreams,
      }
    }
  },

  async terminated(hub) {
    const doomed = new Producer(hub)
    await doomed.next('ready')
    doomed.worker.on('exit', () => doomed.link.fail(new SluiceError('ERR_WORKER_CRASHED', 'worker exited')))
    const reader = hub.open({ window: 4096 })
    doomed.run('forever', reader, { chunkSize: 512 })
    await doomed.next('forever-started')
    let bytes = 0
    try {
      for await (const chunk of reader.stream) {
        bytes += chunk.byteLength
        if (bytes >= 8192) void doomed.worker.terminate()
      }
      return { error: 'stream closed instead of erroring' }
    } catch (error) {
      return {
        bytesAtLeast8192: bytes >= 8192,
        error: describe(error),
        openStreams: hub.openStreams,
        linkStreams: doomed.link.openStreams,
      }
    }
  },

  // No 'exit' handler at all: the port's own 'close' must fail the stream.
  async terminatedUnwatched(hub) {
    const doomed = new Producer(hub)
    await doomed.next('ready')
    const reader = hub.open({ window: 4096 })
    doomed.run('forever', reader, { chunkSize: 512 })
    await doomed.next('forever-started')
    const streamReader = reader.stream.getReader()
    await streamReader.read()
    await doomed.worker.terminate()
    try {
      for (;;) if ((await streamReader.read()).done) return { error: 'stream closed instead of erroring' }
    } catch (error) {
      return { error: describe(error), openStreams: hub.openStreams, linkStreams: doomed.link.openStreams }
    }
  },

  async crashed(hub) {
    const doomed = new Producer(hub)
    await doomed.next('ready')
    let workerError = ''
    doomed.worker.on('error', (error: Error) => {
      workerError = error.message
      doomed.link.fail(new SluiceError('ERR_WORKER_CRASHED', 'worker crashed', { cause: error }))
    })
    const reader = hub.open()
    doomed.run('crash', reader)
    const chunks: Uint8Array[] = []
    try {
      for await (const chunk of reader.stream) chunks.push(chunk)
      return { error: 'stream closed instead of erroring' }
    } catch (error) {
      return { dataBeforeError: text(chunks), error: describe(error), workerError, openStreams: hub.openStreams }
    }
  },
}

function withTimeout<T>(promise: Promise<T>, ms: number, label: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms in ${label}`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

await runMain(async () => {
  const only = process.argv.slice(2)
  const hub = new ChunkReaderHub()
  const producer = new Producer(hub)
  await withTimeout(producer.next('ready'), 20_000, 'worker start')
  const results: Record<string, unknown> = { runtime: runtimeName() }
  for (const [name, run] of Object.entries(cases)) {
    if (only.length > 0 && !only.includes(name)) continue
    try {
      results[name] = await withTimeout(run(hub, producer), 15_000, name)
    } catch (error) {
      results[name] = { error: error instanceof Error ? error.message : String(error) }
    }
  }
  await producer.worker.terminate()
  return results
})
process.exit(0)

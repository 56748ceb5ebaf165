// Worker side of the chunk-channel scenarios: one ChunkWriterHub on the port the main thread sends, and named
// producers the main thread starts with { kind: 'run', name, handle, params }. Findings go back over parentPort
// as { kind: 'report', name, ... }; the live byte count of the credit case goes through a SharedArrayBuffer so
// the main thread can check "sent − read ≤ window" at any instant, without sleeps.
import { parentPort } from 'node:worker_threads'
import type { MessagePort } from 'node:worker_threads'
import { sharedNow } from '../../../core/clock.ts'
import { SluiceError } from '../../../core/errors.ts'
import { ChunkWriterHub } from '../../../core/pool/chunk-channel.ts'
import type { ChunkChannelHandle, ChunkWriter } from '../../../core/pool/chunk-channel.ts'
import { kSentBytes, seededChunks } from '../chunk-channel-fixtures.ts'

interface RunMessage {
  kind: 'run'
  name: string
  handle: ChunkChannelHandle
  params: Record<string, number>
}

const port = parentPort!
let hub: ChunkWriterHub
let shared: Int32Array

const report = (name: string, fields: Record<string, unknown>): void =>
  port.postMessage({ kind: 'report', name, ...fields })

function describe(reason: unknown): Record<string, unknown> {
  const error = reason as { name?: unknown; message?: unknown; code?: unknown }
  return { name: error?.name, message: error?.message, code: error?.code }
}

/** Resolves with the abort reason (for a producer that is stalled on nothing but the signal). */
function aborted(signal: AbortSignal): Promise<unknown> {
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(signal.reason), { once: true }))
}

const producers: Record<string, (writer: ChunkWriter, params: Record<string, number>) => Promise<void>> = {
  // Seeded chunks with an event every `eventEvery` chunks that says how many bytes precede it.
  async seeded(writer, { seed = 1, count = 100, maxSize = 100, eventEvery = 0 }) {
    let bytes = 0
    let index = 0
    for (const chunk of seededChunks(seed, count, maxSize)) {
      if (eventEvery > 0 && index++ % eventEvery === 0) writer.event({ type: 'mark', bytesBefore: bytes })
      await writer.write(chunk)
      bytes += chunk.byteLength
    }
    writer.event({ type: 'end', bytesBefore: bytes })
    await writer.close()
  },

  // As fast as credit allows (the main thread counts the messages it receives).
  async burst(writer, { count = 1000, size = 64 }) {
    const chunk = new Uint8Array(size).fill(7)
    for (let i = 0; i < count; i++) await writer.write(chunk)
    await writer.close()
  },

  // Writes until a write stays pending, reports, then keeps going (or gets cancelled).
  async credit(writer, { chunkSize = 1024, total = 65_536 }) {
    let reportedBlock = false
    const chunk = new Uint8Array(chunkSize)
    let written = 0
    try {
      while (written < total) {
        chunk.fill(written / chunkSize)
        const pending = writer.write(chunk)
        Atomics.store(shared, kSentBytes, writer.sentBytes)
        if (!reportedBlock && writer.desiredSize < 0) {
          reportedBlock = true
          report('blocked', { sentBytes: writer.sentBytes, desiredSize: writer.desiredSize, at: sharedNow() })
        }
        await pending
        Atomics.store(shared, kSentBytes, writer.sentBytes)
        written += chunkSize
      }
      await writer.close()
      report('credit-done', { sentBytes: writer.sentBytes })
    } catch (error) {
      report('cancelled', {
        at: sharedNow(),
        signalAborted: writer.signal.aborted,
        sameReason: error === writer.signal.reason,
        reason: describe(error),
      })
    }
  },

  // One chunk, then an upstream that never answers: only the signal can end it.
  async stall(writer) {
    await writer.write(new TextEncoder().encode('data: first\n\n'))
    const reason = await aborted(writer.signal)
    report('stall-cancelled', { at: sharedNow(), reason: describe(reason) })
  },

  // Opens, then waits for the cancel that was issued before the task even started.
  async early(writer) {
    const openedAt = sharedNow()
    const reason = await aborted(writer.signal)
    report('early-cancelled', { openedAt, at: sharedNow(), reason: describe(reason) })
  },

  // Some data, then an upstream error with extra fields.
  async fail(writer, { chunks = 3 }) {
    for (let i = 0; i < chunks; i++) await writer.write(new TextEncoder().encode(`data: ${i}\n\n`))
    const error = Object.assign(new SluiceError('ERR_UPSTREAM_STATUS', 'upstream answered 502'), { status: 502 })
    writer.error(error)
  },

  // Writes forever (credit-limited); the main thread kills the worker.
  async forever(writer, { chunkSize = 512 }) {
    const chunk = new Uint8Array(chunkSize).fill(1)
    report('forever-started', {})
    for (;;) await writer.write(chunk)
  },

  // Writes one chunk, then throws out of the worker: an uncaught error kills it ('error' then 'exit').
  async crash(writer) {
    await writer.write(new TextEncoder().encode('data: before crash\n\n'))
    setTimeout(() => {
      throw new Error('worker blew up')
    }, 0)
  },

  // One chunk per { kind: 'next' } from the main thread: a trickle, lone chunks must go out promptly.
  async trickle(writer, { count = 5 }) {
    for (let i = 0; i < count; i++) {
      await new Promise<void>((resolve) => {
        const onMessage = (message: { kind?: string }): void => {
          if (message.kind !== 'next') return
          port.off('message', onMessage)
          resolve()
        }
        port.on('message', onMessage)
      })
      await writer.write(new TextEncoder().encode(`data: ${i}\n\n`))
      report('trickle-sent', { index: i, at: sharedNow() })
    }
    await writer.close()
  },

  // A delayed answer with nothing else to keep the main thread alive (keep-alive scenario).
  async delayed(writer, { delayMs = 200 }) {
    await new Promise((resolve) => setTimeout(resolve, delayMs))
    await writer.write(new TextEncoder().encode('data: late\n\n'))
    await writer.close()
  },
}

port.on('message', (message: { kind: string; port?: MessagePort; shared?: SharedArrayBuffer } | RunMessage) => {
  if (message.kind === 'init') {
    const init = message as { port: MessagePort; shared: SharedArrayBuffer; maxBatchBytes?: number }
    hub = new ChunkWriterHub(init.port)
    shared = new Int32Array(init.shared)
    report('ready', {})
  } else if (message.kind === 'pong-later') {
    const reply = (message as unknown as { reply: MessagePort }).reply
    setTimeout(() => reply.postMessage('pong'), 200)
  } else if (message.kind === 'ping') {
    report('pong', { sentBytes: Atomics.load(shared, kSentBytes) })
  } else if (message.kind === 'run') {
    const run = message as RunMessage
    const writer = hub.open(run.handle)
    const producer = producers[run.name]
    if (producer === undefined) throw new Error(`unknown producer ${run.name}`)
    producer(writer, run.params).catch((error: unknown) => writer.error(error))
  }
})

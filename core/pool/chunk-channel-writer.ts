/**
 * Worker side of one stream: credit-based flow control. The producer may have sent at most `credit` bytes that
 * the consumer has not yet read; `write()` sends what the credit allows and resolves only once the whole chunk is
 * sent, so a producer that awaits each write reads its upstream only as fast as the main thread's client reads.
 * A chunk larger than the remaining credit is split (the only case where a chunk is split: the consumer is
 * behind, so chunk count does not matter), which keeps "bytes in flight ≤ window" exact.
 * @module
 */
import { deferred } from '../abort.ts'
import type { FrameBatch } from './chunk-channel-batch.ts'
import { OP_END, OP_ERROR, OP_EVENT } from './chunk-channel-protocol.ts'
import { reasonToWire } from './chunk-channel-reason.ts'

/** The producer's end of a stream, returned by `ChunkWriterHub.open()`. */
export interface ChunkWriter {
  /** The stream id from the handle. */
  readonly id: number
  /**
   * Aborts when the consumer cancels (reason: the consumer's reason, rebuilt by `reasonFromWire`) or the hub
   * closes. Pass it to the upstream `fetch` so a client leaving cancels the upstream at once.
   */
  readonly signal: AbortSignal
  /** Credit left minus bytes queued behind it (like `WritableStreamDefaultWriter.desiredSize`); ≤ 0: wait. */
  readonly desiredSize: number
  /** Bytes handed to the channel so far (sent or in the current batch). */
  readonly sentBytes: number
  /**
   * Sends `chunk` (copied; reuse it once the promise resolved). Resolves when all of it is sent, i.e. at once while
   * there is credit; rejects with `signal.reason` if the consumer cancels first, with a TypeError after `close()`.
   */
  write(chunk: Uint8Array): Promise<void>
  /** A lifecycle event (structured-cloneable; checked now), delivered to the consumer in order with the data. */
  event(value: unknown): void
  /** Ends the stream after the data written so far. Resolves once the end is sent (not when it is read). */
  close(): Promise<void>
  /** Fails the stream after the data written so far; the consumer's read rejects with (a rebuilt) `reason`. */
  error(reason: unknown): void
}

type QueuedItem =
  | { readonly chunk: Uint8Array; offset: number; readonly done: ReturnType<typeof deferred<void>> }
  | {
    readonly chunk: null
    readonly op: number
    readonly value: unknown
    readonly done?: ReturnType<typeof deferred<void>>
  }

const RESOLVED = Promise.resolve()
const OPEN = 0
const CLOSING = 1
const FINISHED = 2

/** Internal implementation; the hub hands it out typed as `ChunkWriter`. */
export class ProducerStream implements ChunkWriter {
  readonly id: number
  readonly #batch: FrameBatch
  readonly #onFinished: (stream: ProducerStream) => void
  readonly #abort = new AbortController()
  #credit: number
  #queue: QueuedItem[] = []
  #queuedBytes = 0
  #state = OPEN
  sentBytes = 0

  constructor(id: number, window: number, batch: FrameBatch, onFinished: (stream: ProducerStream) => void) {
    this.id = id
    this.#credit = window
    this.#batch = batch
    this.#onFinished = onFinished
  }

  get signal(): AbortSignal {
    return this.#abort.signal
  }

  get desiredSize(): number {
    return this.#credit - this.#queuedBytes
  }

  write(chunk: Uint8Array): Promise<void> {
    if (this.#state !== OPEN) return Promise.reject(this.#refusal('write'))
    const length = chunk.byteLength
    if (length === 0) return RESOLVED
    if (this.#queue.length === 0) {
      const sent = Math.min(this.#credit, length)
      if (sent > 0) this.#send(chunk, 0, sent)
      if (sent === length) return RESOLVED
      return this.#enqueue({ chunk, offset: sent, done: deferred<void>() }, length - sent)
    }
    return this.#enqueue({ chunk, offset: 0, done: deferred<void>() }, length)
  }

  event(value: unknown): void {
    if (this.#abort.signal.aborted) return
    if (this.#state !== OPEN) throw this.#refusal('event')
    // Fail here, at the caller, rather than later in postMessage, which would lose the whole batch.
    structuredClone(value)
    this.#control(OP_EVENT, value)
  }

  close(): Promise<void> {
    if (this.#abort.signal.aborted) return Promise.reject(this.#abort.signal.reason)
    if (this.#state !== OPEN) return Promise.reject(this.#refusal('close'))
    this.#state = CLOSING
    return this.#control(OP_END, undefined)
  }

  error(reason: unknown): void {
    if (this.#state !== OPEN) return
    this.#state = CLOSING
    void this.#control(OP_ERROR, reasonToWire(reason))
  }

  /** The consumer read `bytes` more: send what is queued behind the credit. */
  grant(bytes: number): void {
    if (this.#state === FINISHED) return
    this.#credit += bytes
    const queue = this.#queue
    while (queue.length > 0) {
      const item = queue[0]!
      if (item.chunk === null) {
        queue.shift()
        this.#emit(item.op, item.value)
        item.done?.resolve()
        continue
      }
      const left = item.chunk.byteLength - item.offset
      const sent = Math.min(this.#credit, left)
      if (sent === 0) return
      this.#send(item.chunk, item.offset, item.offset + sent)
      this.#queuedBytes -= sent
      if (sent < left) {
        item.offset += sent
        return
      }
      queue.shift()
      item.done.resolve()
    }
  }

  /** The consumer cancelled or the hub closed: abort, reject queued writes with the reason, send nothing more. */
  cancel(reason: unknown): void {
    if (this.#state === FINISHED) return
    this.#finish()
    this.#abort.abort(reason)
    const queue = this.#queue
    this.#queue = []
    this.#queuedBytes = 0
    for (const item of queue) item.done?.reject(this.#abort.signal.reason)
  }

  #send(chunk: Uint8Array, start: number, end: number): void {
    this.#batch.data(this.id, chunk, start, end)
    this.#credit -= end - start
    this.sentBytes += end - start
  }

  #enqueue(item: QueuedItem, bytes: number): Promise<void> {
    this.#queue.push(item)
    this.#queuedBytes += bytes
    return item.done!.promise
  }

  /** Control frames wait behind queued data so the consumer sees everything in write order. */
  #control(op: number, value: unknown): Promise<void> {
    if (this.#queue.length === 0) {
      this.#emit(op, value)
      return RESOLVED
    }
    const done = op === OP_EVENT ? undefined : deferred<void>()
    this.#queue.push({ chunk: null, op, value, done })
    return done?.promise ?? RESOLVED
  }

  #emit(op: number, value: unknown): void {
    if (op === OP_END) this.#batch.frame(op, this.id, 0)
    else this.#batch.value(op, this.id, value)
    if (op !== OP_EVENT) this.#finish()
  }

  #finish(): void {
    this.#state = FINISHED
    this.#onFinished(this)
  }

  #refusal(method: string): unknown {
    if (this.#abort.signal.aborted) return this.#abort.signal.reason
    return new TypeError(`Cannot ${method}() on chunk stream ${this.id}: it was closed`)
  }
}

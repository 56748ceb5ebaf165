/**
 * Collects the frames one thread sends on one port during a turn of its event loop and posts them as one
 * message. Batching is what makes the channel cost per burst instead of per chunk: a producer that is ahead of
 * its consumer (credit just arrived, upstream chunks already buffered) writes many chunks within one macrotask,
 * and they all leave in one `postMessage`.
 *
 * When to post: `setImmediate`, i.e. after the current macrotask and all its microtasks. A microtask flush would
 * post before the producer's next `await`-ed write resumes (one message per chunk again); a timer would delay a
 * lone chunk by ≥ 1 ms. `setImmediate` runs 0.7–3.4 µs later on an idle loop here (Node 20, Bun 1.4.5,
 * Deno 2.9.6; all three have it in node:timers). A batch that reaches `maxBatchBytes` is posted at once.
 *
 * Data bytes are copied into one growing buffer that is transferred (never copied) by `postMessage`; the copy
 * also means the producer may reuse a chunk as soon as its `write()` resolved.
 * @module
 */
import { setImmediate } from 'node:timers'
import type { ChunkPort } from './chunk-channel-port.ts'
import { FRAME_SIZE, OP_DATA, WIRE_TAG, type WireBatch } from './chunk-channel-protocol.ts'

/** Smallest batch buffer: one allocation covers a burst of SSE-sized chunks. */
const MIN_BUFFER_BYTES = 4096
const NO_BYTES = new Uint8Array(0)

export class FrameBatch {
  readonly #port: ChunkPort
  readonly #maxBatchBytes: number
  #frames: number[] = []
  #values: unknown[] | null = null
  #bytes: Uint8Array = NO_BYTES
  #used = 0
  #scheduled = false
  #closed = false
  /** Number of `postMessage` calls so far (tests and benchmarks check that batching happens). */
  messagesPosted = 0

  constructor(port: ChunkPort, maxBatchBytes: number) {
    this.#port = port
    this.#maxBatchBytes = maxBatchBytes
  }

  /** Appends a frame whose `arg` is a number. */
  frame(op: number, id: number, arg: number): void {
    if (this.#closed) return
    this.#frames.push(op, id, arg)
    this.#schedule()
  }

  /** Appends a frame carrying a structured-cloneable value. */
  value(op: number, id: number, value: unknown): void {
    if (this.#closed) return
    const values = (this.#values ??= [])
    this.#frames.push(op, id, values.push(value) - 1)
    this.#schedule()
  }

  /**
   * Appends `chunk[start, end)` as data of stream `id`. Consecutive data of one stream with nothing in between
   * becomes one frame, so the consumer gets one chunk per burst (fewer downstream writes; cost is per chunk).
   */
  data(id: number, chunk: Uint8Array, start: number, end: number): void {
    if (this.#closed) return
    const length = end - start
    this.#reserve(length)
    this.#bytes.set(start === 0 && end === chunk.byteLength ? chunk : chunk.subarray(start, end), this.#used)
    this.#used += length
    const frames = this.#frames
    const last = frames.length - FRAME_SIZE
    if (last >= 0 && frames[last] === OP_DATA && frames[last + 1] === id) frames[last + 2]! += length
    else frames.push(OP_DATA, id, length)
    if (this.#used >= this.#maxBatchBytes) this.flush()
    else this.#schedule()
  }

  /** Posts what has been collected (no-op when empty). */
  flush(): void {
    if (this.#frames.length === 0 || this.#closed) return
    let buffer: ArrayBuffer | null = null
    if (this.#used > 0) {
      buffer = this.#bytes.buffer as ArrayBuffer
      // Shrink a mostly empty buffer: the consumer keeps views on it until its client read them.
      if (this.#used <= buffer.byteLength >>> 1) buffer = buffer.slice(0, this.#used)
    }
    const message: WireBatch = [WIRE_TAG, this.#frames, buffer, this.#values]
    this.#frames = []
    this.#values = null
    this.#bytes = NO_BYTES
    this.#used = 0
    this.messagesPosted++
    this.#port.postMessage(message, buffer === null ? [] : [buffer])
  }

  /** Drops anything pending; later frames are ignored (the port is gone). */
  close(): void {
    this.#closed = true
    this.#frames = []
    this.#values = null
    this.#bytes = NO_BYTES
  }

  #reserve(length: number): void {
    const needed = this.#used + length
    if (needed <= this.#bytes.byteLength) return
    // Grow geometrically, and start at 4 chunks' worth: with 16 KiB chunks, growing 16 → 32 → 64 KiB (two extra
    // allocations and copies per batch) made the channel 3× slower than one 64 KiB allocation (bench, Node 20).
    const wanted = Math.min(Math.max(this.#bytes.byteLength * 2, length * 4), this.#maxBatchBytes)
    const grown = new Uint8Array(Math.max(needed, MIN_BUFFER_BYTES, wanted))
    grown.set(this.#bytes.subarray(0, this.#used))
    this.#bytes = grown
  }

  #schedule(): void {
    if (this.#scheduled) return
    this.#scheduled = true
    setImmediate(this.#onImmediate)
  }

  readonly #onImmediate = (): void => {
    this.#scheduled = false
    this.flush()
  }
}

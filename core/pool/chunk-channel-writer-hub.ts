/**
 * Worker side of the chunk channel: one hub per port, any number of writers on it. Frames of every writer on
 * the hub share one batch, so many slow streams of one worker cost one `postMessage` per event-loop turn rather
 * than one per chunk.
 *
 * If the port closes (the main side closed it), every open writer is aborted, so its upstream is cancelled.
 *
 * Keep-alive: the port is unref'd; the hub holds `holdAlive()` while any writer is open, so a producer waiting
 * for credit keeps its worker alive, and an idle hub does not.
 * @module
 */
import { SluiceError } from '../errors.ts'
import { holdAlive } from '../keep-alive.ts'
import { positiveInteger } from '../validate.ts'
import { FrameBatch } from './chunk-channel-batch.ts'
import { type ChunkPort, listenForBatches } from './chunk-channel-port.ts'
import { FRAME_SIZE, OP_CANCEL, OP_GRANT, OP_OPEN } from './chunk-channel-protocol.ts'
import type { ChunkChannelHandle, WireBatch } from './chunk-channel-protocol.ts'
import { reasonFromWire } from './chunk-channel-reason.ts'
import { type ChunkWriter, ProducerStream } from './chunk-channel-writer.ts'

export interface ChunkWriterHubOptions {
  /** A batch this large is posted at once instead of at the end of the turn. Default 65 536. */
  maxBatchBytes?: number
}

/**
 * Opens writers for handles created by a `ChunkReaderHub` on the main thread.
 *
 * @example
 * ```ts
 * // in the worker, per task { channel: ChunkChannelHandle, ... }
 * const writer = hub.open(task.channel)
 * const response = await fetch(url, { signal: writer.signal })
 * for await (const chunk of response.body!) await writer.write(chunk)
 * await writer.close()
 * ```
 */
export class ChunkWriterHub {
  readonly #batch: FrameBatch
  readonly #writers = new Map<number, ProducerStream>()
  readonly #stopListening: () => void
  #releaseAlive: (() => void) | undefined
  #closed = false

  constructor(port: ChunkPort, { maxBatchBytes = 65_536 }: ChunkWriterHubOptions = {}) {
    this.#batch = new FrameBatch(port, positiveInteger('maxBatchBytes', maxBatchBytes))
    this.#stopListening = listenForBatches(
      port,
      (batch) => this.#receive(batch),
      () => this.close(new SluiceError('ERR_CLOSED', 'chunk channel port closed: the consumer side is gone')),
    )
  }

  /** Writers open on this hub. */
  get openWriters(): number {
    return this.#writers.size
  }

  /** Messages posted so far (each carries a whole batch). */
  get messagesPosted(): number {
    return this.#batch.messagesPosted
  }

  /** Opens the writer of the stream `handle` names and tells the main thread it started. */
  open(handle: ChunkChannelHandle): ChunkWriter {
    if (this.#closed) throw new SluiceError('ERR_CLOSED', 'ChunkWriterHub is closed')
    const id = handle.id
    if (this.#writers.has(id)) throw new TypeError(`Chunk stream ${id} is already open on this hub`)
    const writer = new ProducerStream(id, positiveInteger('window', handle.window), this.#batch, this.#onFinished)
    this.#writers.set(id, writer)
    this.#releaseAlive ??= holdAlive()
    this.#batch.frame(OP_OPEN, id, 0)
    return writer
  }

  /**
   * Posts what is pending, then aborts every open writer with `reason` and stops listening. The port itself is
   * left to its owner.
   */
  close(reason: unknown = new SluiceError('ERR_CLOSED', 'ChunkWriterHub closed')): void {
    if (this.#closed) return
    this.#batch.flush()
    this.#closed = true
    this.#batch.close()
    this.#stopListening()
    for (const writer of [...this.#writers.values()]) writer.cancel(reason)
  }

  readonly #onFinished = (writer: ProducerStream): void => {
    this.#writers.delete(writer.id)
    if (this.#writers.size === 0) {
      this.#releaseAlive?.()
      this.#releaseAlive = undefined
    }
  }

  #receive([, frames, , values]: WireBatch): void {
    for (let i = 0; i < frames.length; i += FRAME_SIZE) {
      // Frames for a writer that already finished are expected (they crossed its END on the wire): ignore them.
      const writer = this.#writers.get(frames[i + 1]!)
      if (writer === undefined) continue
      const arg = frames[i + 2]!
      if (frames[i] === OP_GRANT) writer.grant(arg)
      else if (frames[i] === OP_CANCEL) writer.cancel(reasonFromWire(values?.[arg]))
    }
  }
}

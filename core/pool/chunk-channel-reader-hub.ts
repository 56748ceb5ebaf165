/**
 * Main-thread side of the chunk channel. One hub per pool; `attach()` each worker's port (or each stream's port);
 * `open()` a reader per stream and send its `handle` with the task. The reader is bound to whichever attached
 * port its writer's OPEN frame arrives on, so the hub need not know in advance which worker runs the task
 * (piscina picks the worker).
 *
 * Keep-alive, by state (measured: Node and Deno keep a listening port alive, Bun 1.4.5 does not; Node lets the
 * process exit under an unref'd worker, Bun 1.4.5 and Deno 2.9.6 stay up while that worker has a pending timer):
 * - a reader open (waiting for its writer, or for data): the hub holds `holdAlive()` (one ref'd timer), so a
 *   waiting client is never dropped because piscina unref'd an idle-looking worker;
 * - no reader open: nothing; ports are unref'd, so an idle hub never keeps the process alive.
 * The worker side holds its own keep-alive while a writer is open (`ChunkWriterHub`).
 * @module
 */
import { SluiceError } from '../errors.ts'
import { holdAlive } from '../keep-alive.ts'
import { positiveInteger } from '../validate.ts'
import { WorkerCrashedError } from './pool-errors.ts'
import { FrameBatch } from './chunk-channel-batch.ts'
import { type ChunkPort, listenForBatches } from './chunk-channel-port.ts'
import {
  FRAME_SIZE,
  OP_CANCEL,
  OP_DATA,
  OP_END,
  OP_ERROR,
  OP_EVENT,
  OP_GRANT,
  OP_OPEN,
} from './chunk-channel-protocol.ts'
import type { WireBatch } from './chunk-channel-protocol.ts'
import { reasonFromWire, reasonToWire } from './chunk-channel-reason.ts'
import { type ChunkReader, ConsumerStream, type ReaderLink } from './chunk-channel-reader.ts'

export interface ChunkReaderHubOptions {
  /** Default credit window per stream, in bytes. Default 65 536. */
  window?: number
}

export interface OpenReaderOptions {
  /** Credit window of this stream in bytes (the most bytes sent but not yet read). */
  window?: number
  /**
   * Receives the writer's events, synchronously as their frame arrives: every chunk written before the event has
   * been enqueued into `stream` (not necessarily read yet).
   */
  onEvent?: (event: unknown) => void
}

/** One attached port. */
export interface ChunkLink {
  /** Readers currently bound to this port. */
  readonly openStreams: number
  /** Messages posted to the worker so far (grants and cancels, batched). */
  readonly messagesPosted: number
  /** Messages received from the worker so far. */
  readonly messagesReceived: number
  /**
   * The worker behind this port is gone (its 'exit'/'error'), or the port is being retired: errors every reader
   * bound to it with `error` (after the chunks they already received), cancels their writers (if the worker still
   * listens) and stops listening. Readers not yet bound
   * are the caller's (their task rejects: call `reader.fail()`). Happens by itself, with ERR_WORKER_CRASHED, when
   * the port closes (the worker died or closed its end); the first failure wins. Measured: on `terminate()` the
   * port's 'close' comes before the worker's 'exit' on Node and Bun; an uncaught error's 'error' event comes first.
   */
  fail(error: unknown): void
  /** Detaches the port (e.g. a per-stream port after its stream ended): `fail()` with an ERR_CLOSED error. */
  close(): void
}

/**
 * Creates readers and routes the frames of attached ports to them.
 *
 * @example
 * ```ts
 * const hub = new ChunkReaderHub()
 * worker.on('exit', () => link.fail(new SluiceError('ERR_WORKER_CRASHED', 'worker exited')))
 * const link = hub.attach(port) // the other end of `port` is the worker's ChunkWriterHub
 * const reader = hub.open({ onEvent: (event) => metrics.record(event) })
 * pool.run({ channel: reader.handle, request }).catch((error) => reader.fail(error))
 * return new Response(reader.stream)
 * ```
 */
export class ChunkReaderHub {
  readonly #window: number
  readonly #readers = new Map<number, ConsumerStream>()
  #nextId = 1
  #releaseAlive: (() => void) | undefined

  constructor({ window = 65_536 }: ChunkReaderHubOptions = {}) {
    this.#window = positiveInteger('window', window)
  }

  /** Readers not yet settled (waiting for their writer, or receiving). */
  get openStreams(): number {
    return this.#readers.size
  }

  /** A new stream: send `reader.handle` to the worker that will write it. */
  open({ window = this.#window, onEvent }: OpenReaderOptions = {}): ChunkReader {
    const reader = new ConsumerStream(this.#nextId++, positiveInteger('window', window), onEvent, this.#onSettled)
    this.#readers.set(reader.id, reader)
    this.#releaseAlive ??= holdAlive()
    return reader
  }

  /** Starts routing frames from `port` (the other end belongs to a `ChunkWriterHub`). */
  attach(port: ChunkPort): ChunkLink {
    return new PortLink(port, this.#readers)
  }

  /** Fails every open reader (shutdown). */
  close(error: unknown = new SluiceError('ERR_CLOSED', 'ChunkReaderHub closed')): void {
    for (const reader of [...this.#readers.values()]) reader.fail(error)
  }

  readonly #onSettled = (reader: ConsumerStream): void => {
    if (!this.#readers.delete(reader.id) || this.#readers.size > 0) return
    this.#releaseAlive?.()
    this.#releaseAlive = undefined
  }
}

const PORT_CLOSED = 'chunk channel port closed: its worker ended or closed it'

class PortLink implements ChunkLink, ReaderLink {
  readonly #batch: FrameBatch
  readonly #readers: Map<number, ConsumerStream>
  readonly #bound = new Set<ConsumerStream>()
  readonly #stopListening: () => void
  #failed = false
  messagesReceived = 0

  constructor(port: ChunkPort, readers: Map<number, ConsumerStream>) {
    // Main → worker batches hold only grants and cancels: no data, so no byte limit applies.
    this.#batch = new FrameBatch(port, Number.MAX_SAFE_INTEGER)
    this.#readers = readers
    // Safety net for a pool that misses its worker's 'exit': a dead worker's port closes, and nothing bound to it
    // may wait forever. A WorkerCrashedError (502), the same as the pool's own: the port can close before the pool
    // sees the 'exit', and a buffered body or a passed-through 4xx body read then must fail as a crash, not as an
    // error without a status (the chaos soak saw those become 500s once HEAD left the worker before the body).
    this.#stopListening = listenForBatches(
      port,
      (batch) => this.#receive(batch),
      () => this.fail(new WorkerCrashedError(PORT_CLOSED)),
    )
  }

  get openStreams(): number {
    return this.#bound.size
  }

  get messagesPosted(): number {
    return this.#batch.messagesPosted
  }

  grant(id: number, bytes: number): void {
    this.#batch.frame(OP_GRANT, id, bytes)
  }

  cancel(id: number, reason: unknown): void {
    this.#batch.value(OP_CANCEL, id, reasonToWire(reason))
  }

  release(reader: ConsumerStream): void {
    this.#bound.delete(reader)
  }

  close(): void {
    this.fail(new SluiceError('ERR_CLOSED', 'chunk channel port detached'))
  }

  fail(error: unknown): void {
    if (this.#failed) return
    this.#failed = true
    this.#stopListening()
    // If the worker is still alive (the port is only being retired), its writers must stop too. Posting to a port
    // whose other end is dead or closed is a silent no-op on all three runtimes (measured), so this is safe.
    for (const reader of [...this.#bound]) {
      this.cancel(reader.id, error)
      reader.error(error)
    }
    this.#bound.clear()
    this.#batch.flush()
    this.#batch.close()
  }

  #receive([, frames, buffer, values]: WireBatch): void {
    this.messagesReceived++
    const copyData = buffer !== null && carriesSeveralStreams(frames)
    let offset = 0
    for (let i = 0; i < frames.length; i += FRAME_SIZE) {
      const op = frames[i]!
      const id = frames[i + 1]!
      const arg = frames[i + 2]!
      const reader = this.#readers.get(id)
      if (op === OP_DATA) {
        // A batch shared by several streams is cut into exact copies, so a slow client pins only its own bytes,
        // not every other stream's; a one-stream batch is handed on as views (no copy).
        if (reader !== undefined && reader.link === this) {
          reader.push(
            copyData ? new Uint8Array(buffer.slice(offset, offset + arg)) : new Uint8Array(buffer!, offset, arg),
          )
        }
        offset += arg
      } else if (op === OP_OPEN) {
        if (reader === undefined) this.cancel(id, new SluiceError('ERR_CLOSED', `chunk stream ${id} has no reader`))
        else if (reader.bind(this)) this.#bound.add(reader)
      } else if (reader !== undefined && reader.link === this) {
        if (op === OP_EVENT) reader.event(values?.[arg])
        else if (op === OP_END) reader.end()
        else if (op === OP_ERROR) reader.error(reasonFromWire(values?.[arg]))
      }
    }
  }
}

function carriesSeveralStreams(frames: number[]): boolean {
  let stream = -1
  for (let i = 0; i < frames.length; i += FRAME_SIZE) {
    if (frames[i] !== OP_DATA) continue
    if (stream === -1) stream = frames[i + 1]!
    else if (frames[i + 1] !== stream) return true
  }
  return false
}

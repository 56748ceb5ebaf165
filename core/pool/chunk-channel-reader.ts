/**
 * Main-thread side of one stream: a ReadableStream fed by the frames of one writer, granting credit back as its
 * consumer reads.
 *
 * Chunks are enqueued as they arrive into a stream whose high-water mark is the credit window in bytes, so reads
 * cost what an in-process ReadableStream costs. `pull()` serves as the "consumer progressed" hook: the spec calls
 * it after every read that leaves `desiredSize > 0` (ReadableStreamDefaultController [[PullSteps]] →
 * CallPullIfNeeded), which is every read here because at most `window` bytes are ever queued.
 *
 * Credit (like HTTP/2 WINDOW_UPDATE, RFC 9113 §6.9): nothing is granted while the producer still holds at least
 * half the window of credit (a trickling stream costs no grant messages at all); below that, consumed bytes are
 * granted back in steps of a quarter window, or at once when the consumer has drained its queue (it is waiting,
 * so latency matters more than a message). No deadlock: when the producer is blocked (credit 0) and the consumer
 * has read everything, the ungranted consumed bytes equal the whole window and the queue is empty.
 *
 * Terminal frames keep their order: an END closes the stream after the queued chunks (close is graceful); an
 * ERROR, or `fail()`, errors it only once the queued chunks were read, because `controller.error()` would drop
 * them — the client gets every byte the upstream produced before the failure.
 * @module
 */
import type { ChunkChannelHandle } from './chunk-channel-protocol.ts'

/** The consumer's end of a stream, returned by `ChunkReaderHub.open()`. */
export interface ChunkReader {
  /** Stream id, unique within its hub. */
  readonly id: number
  /** Send this to the worker (in the task) for `ChunkWriterHub.open()`. Structured-cloneable. */
  readonly handle: ChunkChannelHandle
  /** The bytes the worker writes, with backpressure across the thread boundary. */
  readonly stream: ReadableStream<Uint8Array>
  /** Bytes received from the worker so far (read or still queued). */
  readonly receivedBytes: number
  /**
   * Errors the stream with `error` after the chunks already received, and cancels the producer if it started.
   * The pool calls it when the task fails or its worker dies (or use `ChunkLink.fail` for a whole worker); it
   * also releases a reader whose writer never opened. No-op once the stream ended.
   */
  fail(error: unknown): void
}

/** What a reader needs from its link (the port its writer opened on). */
export interface ReaderLink {
  grant(id: number, bytes: number): void
  cancel(id: number, reason: unknown): void
  /** The reader settled: forget it. */
  release(reader: ConsumerStream): void
}

const OPEN = 0
/** END or ERROR received (or failed): nothing more will arrive; queued chunks are still readable. */
const ENDED = 1
/** Closed, errored or cancelled: gone from the hub. */
const DONE = 2

/** Internal implementation; the hub hands it out typed as `ChunkReader`. */
export class ConsumerStream implements ChunkReader {
  readonly id: number
  readonly handle: ChunkChannelHandle
  readonly stream: ReadableStream<Uint8Array>
  readonly #window: number
  readonly #onEvent: ((event: unknown) => void) | undefined
  readonly #onSettled: (stream: ConsumerStream) => void
  #controller!: ReadableStreamDefaultController<Uint8Array>
  #link: ReaderLink | undefined
  #state = OPEN
  #pendingError: { reason: unknown } | undefined
  /** Cancelled before its writer opened: the reason to send when (if) it does. */
  #earlyCancel: { reason: unknown } | undefined
  #granted: number
  receivedBytes = 0

  constructor(
    id: number,
    window: number,
    onEvent: ((event: unknown) => void) | undefined,
    onSettled: (stream: ConsumerStream) => void,
  ) {
    this.id = id
    this.#window = window
    this.#granted = window
    this.handle = { id, window }
    this.#onEvent = onEvent
    this.#onSettled = onSettled
    this.stream = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.#controller = controller
        },
        pull: () => this.#onProgress(),
        cancel: (reason) => this.#onCancel(reason),
      },
      { highWaterMark: window, size: (chunk) => chunk.byteLength },
    )
  }

  /** The worker opened the writer on `link`. Returns false when the consumer already cancelled. */
  bind(link: ReaderLink): boolean {
    if (this.#earlyCancel !== undefined) {
      link.cancel(this.id, this.#earlyCancel.reason)
      this.#earlyCancel = undefined
      this.#settle()
      return false
    }
    this.#link = link
    return true
  }

  /** The link the writer opened on, once it did. */
  get link(): ReaderLink | undefined {
    return this.#link
  }

  push(chunk: Uint8Array): void {
    if (this.#state !== OPEN) return
    this.receivedBytes += chunk.byteLength
    this.#controller.enqueue(chunk)
  }

  event(value: unknown): void {
    if (this.#state !== OPEN || this.#onEvent === undefined) return
    try {
      this.#onEvent(value)
    } catch (error) {
      // A throwing listener must not lose the rest of the batch (other streams' frames): report it like an
      // uncaught exception instead (HTML "report the exception").
      queueMicrotask(() => {
        throw error
      })
    }
  }

  /** END frame. */
  end(): void {
    if (this.#state !== OPEN) return
    this.#state = ENDED
    this.#controller.close()
    this.#settle()
  }

  /** ERROR frame, or the link failed. */
  error(reason: unknown): void {
    if (this.#state !== OPEN) return
    this.#state = ENDED
    this.#pendingError = { reason }
    this.#settle()
    this.#errorIfDrained()
  }

  fail(error: unknown): void {
    if (this.#earlyCancel !== undefined) {
      // Its writer will never open now: stop waiting for it.
      this.#earlyCancel = undefined
      this.#settle()
      return
    }
    if (this.#state !== OPEN) return
    if (this.#link !== undefined) this.#link.cancel(this.id, error)
    this.error(error)
  }

  #onProgress(): void {
    if (this.#state === ENDED) {
      this.#errorIfDrained()
      return
    }
    const link = this.#link
    if (this.#state !== OPEN || link === undefined) return
    const window = this.#window
    const producerCredit = this.#granted - this.receivedBytes
    if (producerCredit >= window >>> 1) return
    const queued = window - (this.#controller.desiredSize ?? 0)
    const ungranted = this.receivedBytes - queued - (this.#granted - window)
    if (ungranted > 0 && (queued === 0 || ungranted >= window >>> 2)) {
      this.#granted += ungranted
      link.grant(this.id, ungranted)
    }
  }

  #onCancel(reason: unknown): void {
    if (this.#state === DONE) return
    const wasOpen = this.#state === OPEN
    this.#state = DONE
    this.#pendingError = undefined
    if (!wasOpen) return
    if (this.#link !== undefined) {
      this.#link.cancel(this.id, reason)
      this.#settle()
    } else {
      // Stay registered until the writer opens (then cancel it) or the pool calls fail(): see ChunkReaderHub.
      this.#earlyCancel = { reason }
    }
  }

  #errorIfDrained(): void {
    const pending = this.#pendingError
    if (pending === undefined || (this.#controller.desiredSize ?? 0) < this.#window) return
    this.#pendingError = undefined
    this.#state = DONE
    this.#controller.error(pending.reason)
  }

  #settle(): void {
    this.#link?.release(this)
    this.#onSettled(this)
  }
}

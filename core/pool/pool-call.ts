/**
 * The main-thread side of one call running in a worker: what the caller holds (the response promise and the body
 * it reads) and what the worker tells about the call (./pool-protocol.ts: EVENT, HEAD, DONE), joined with the
 * caller's signals and the worker's fate, so that the caller sees the in-process contract:
 *
 * - `response` resolves at HEAD (a stream) or once the whole body arrived (a buffered call), and rejects before
 *   any byte with the error the worker's call rejected with (rebuilt by class), with the caller's own
 *   `signal.reason` / shutdown reason (identity kept: main rejects at once and tells the worker), with a
 *   QueueTimeoutError when no worker started the call within `queueTimeoutMs` of the pool being up (it sat in
 *   piscina's queue: every worker had `streamsPerWorker` calls), or with a WorkerCrashedError (502).
 * - The body reads the chunk channel's stream. A worker that dies mid-stream becomes one SSE error event and a
 *   clean end (the in-process failure shape), never a hang and never a bare network error.
 * - Lifecycle events are recorded on the main thread with the caller's id. The worker's own `end` ends the call's
 *   accounting; if the worker died first (or never started it), main records `error` + `end` itself.
 * - A worker that dies before the upstream answered (no HEAD yet: nothing reached the caller) is like a connection
 *   lost before the first byte, which the in-process client retries: the pool re-sends the call to another worker
 *   once (`resend()`), within what is left of the queue budget. Once only, so a call that itself kills workers
 *   costs at most two. The new worker resumes the call (CallOptions.resume): the attempts made count against the
 *   retries, and the queue budget is what is left. The caller sees one call: one `start`, a `retry` (reason
 *   ERR_WORKER_CRASHED), attempts numbered on.
 * - A call is forgotten once the worker said DONE (or died), not at `end`: its last bytes may still be in flight.
 * @module
 */
import { deferred, onAbort } from '../abort.ts'
import { concatBytes } from '../bytes.ts'
import { monotonicNow, sharedNow } from '../clock.ts'
import type { CallKind, CallOutcome, StreamEvent, StreamEventSink } from '../telemetry/events.ts'
import { onShutdown } from '../upstream/client.ts'
import { QueueTimeoutError } from '../upstream/errors.ts'
import { sseErrorEvent } from '../upstream/sse-error-event.ts'
import type { CallOptions } from '../upstream/types.ts'
import type { ChunkReader } from './chunk-channel-reader.ts'
import { errorFromWire, PoolClosedError, WorkerCrashedError } from './pool-errors.ts'

/** What a call needs from its pool. */
export interface CallHost {
  readonly sink: StreamEventSink
  readonly queueTimeoutMs: number
  readonly queueRetryAfterMs: number
  /**
   * Resolves once the pool's workers are up: the queue deadline starts then, so a pool's startup (loading the
   * workers, the transform) is not charged to the first calls.
   */
  readonly started: Promise<unknown>
  /** The call's `end` is about to be recorded: it no longer counts as active. */
  ended(call: PoolCall): void
  /** The call is over in its worker (or its worker is gone): forget it. */
  settled(call: PoolCall): void
}

/** What a call needs from the worker running it. */
export interface CallWorker {
  /** Why the worker is gone, once it is. */
  readonly failure: Error | undefined
  shutdown(key: number, reason: unknown): void
}

const PENDING = 0
const ANSWERED = 1
const REJECTED = 2

export class PoolCall {
  readonly id: string
  readonly kind: CallKind
  readonly response: Promise<Response>
  readonly #host: CallHost
  #key: number
  #reader: ChunkReader
  #source: ReadableStreamDefaultReader<Uint8Array>
  readonly #answer: ReturnType<typeof deferred<Response>>
  readonly #clientSignal: AbortSignal | undefined
  readonly #startedAt = monotonicNow()
  /** When the queue budget started: once the pool was up (see CallHost.started). */
  #budgetStartedAt: number | undefined
  #deadline: ReturnType<typeof setTimeout> | undefined
  #unlink: (() => void)[] = []
  #head = PENDING
  /** HEAD arrived (a buffered call stays PENDING until its whole body is read). */
  #headSeen = false
  #worker: CallWorker | undefined
  #pendingShutdown: { reason: unknown } | undefined
  #status: number | undefined
  #sse = false
  /** The last bytes sent to the client (up to 4), to know whether it has a whole number of SSE events. */
  #tail: Uint8Array = new Uint8Array(0)
  #body: ReadableStreamDefaultController<Uint8Array> | undefined
  #started = false
  #afterFirstChunk = false
  #attempts = 0
  #resent = false
  #ended = false
  #done = false

  constructor(host: CallHost, key: number, id: string, kind: CallKind, reader: ChunkReader, options: CallOptions) {
    this.#host = host
    this.#key = key
    this.id = id
    this.kind = kind
    this.#reader = reader
    this.#source = reader.stream.getReader()
    this.#answer = deferred<Response>()
    this.response = this.#answer.promise
    this.#clientSignal = options.signal
    // A caller's resumed call (CallOptions.resume) brings its attempts and spent budget along.
    const resumed = options.resume
    this.#attempts = resumed?.attempts ?? 0
    host.started.then(() => {
      this.#budgetStartedAt = monotonicNow() - (resumed?.elapsedMs ?? 0)
      if (this.#head === PENDING && !this.#done) {
        const budgetMs = this.#budgetStartedAt + host.queueTimeoutMs - monotonicNow()
        this.#deadline = setTimeout(() => this.#queueDeadline(), Math.max(0, budgetMs))
      }
    }, noop)
    this.#unlink = [
      onAbort(options.signal, (reason) => this.#clientLeft(reason)),
      onShutdown(options.shutdownSignal, (reason) => this.#shutdown(reason)),
    ]
  }

  /** The key the worker knows the call by (a re-sent call gets a new one: the dead worker's news cannot match). */
  get key(): number {
    return this.#key
  }

  /** EVENT from the worker. */
  onEvent(event: StreamEvent, worker: CallWorker): void {
    this.#bind(worker)
    if (this.#ended) return
    event.id = this.id
    switch (event.type) {
      case 'start':
        // A re-sent call started once, in its first worker.
        if (this.#started) return
        this.#started = true
        break
      case 'acquire':
        this.#attempts = event.attempt
        break
      case 'firstChunk':
        this.#afterFirstChunk = true
        break
      case 'end':
        this.#markEnded()
        break
    }
    this.#host.sink(event)
  }

  /** HEAD from the worker: the upstream answered. */
  onHead(status: number, headers: [string, string][], worker: CallWorker): void {
    this.#bind(worker)
    if (this.#head !== PENDING) return
    this.#headSeen = true
    this.#status = status
    if (this.kind === 'buffered') {
      void this.#readWhole(status, new Headers(headers))
      return
    }
    const responseHeaders = new Headers(headers)
    this.#sse = (responseHeaders.get('content-type') ?? '').includes('text/event-stream')
    this.#resolve(new Response(this.#bodyStream(), { status, headers: responseHeaders }))
  }

  /** DONE from the worker: the call is over there; `wireError` when it was rejected before any byte. */
  onDone(wireError: unknown, worker: CallWorker): void {
    this.#bind(worker)
    if (this.#done) return
    this.#done = true
    if (wireError !== undefined) {
      const error = errorFromWire(wireError)
      this.#reject(error)
      // A call that failed before its client was built (the transform module did not load) sent no events.
      if (!this.#ended) this.#recordFailure(error)
    }
    this.#settle()
  }

  /** piscina rejected the task (its worker died), or the pool is closing: end the call from here. */
  workerFailed(cause: unknown): void {
    if (this.#done) return
    this.#done = true
    const error = cause instanceof PoolClosedError || cause instanceof WorkerCrashedError
      ? cause
      : this.#worker?.failure ??
        new WorkerCrashedError('The worker thread that took this call exited before answering', { cause })
    // Errors the body after what it received (a stream in progress gets its error event), or releases a reader
    // whose writer never opened.
    this.#reader.fail(error)
    this.#reject(error)
    if (!this.#ended) this.#recordFailure(error)
    this.#settle()
  }

  /**
   * Its worker died (piscina rejected the task): how the new worker resumes the call, or undefined when the call
   * may not be re-sent — the upstream answered (bytes may have reached the caller), the caller left or was shut
   * down, the call already ended, it was re-sent once, or no queue budget is left.
   */
  resumption(): { attempts: number; elapsedMs: number } | undefined {
    if (this.#resent || this.#done || this.#ended || this.#headSeen || this.#head !== PENDING) return undefined
    if (this.#budgetStartedAt === undefined || this.#reader.receivedBytes > 0) return undefined
    const elapsedMs = monotonicNow() - this.#budgetStartedAt
    return elapsedMs < this.#host.queueTimeoutMs ? { attempts: this.#attempts, elapsedMs } : undefined
  }

  /**
   * Moves the call to a new key and chunk reader (for the task sent to another worker) after `cause` killed its
   * worker; only after `resumption()` allowed it. Until the new worker takes the call, the queue deadline guards
   * what is left of the budget (then the worker's own client does).
   */
  resend(key: number, reader: ChunkReader, budgetMs: number, cause: unknown): void {
    this.#resent = true
    const failure = this.#worker?.failure ??
      new WorkerCrashedError('The worker thread that took this call exited before answering', { cause })
    // Releases the old reader from the hub (its writer is gone with the worker).
    this.#reader.fail(failure)
    this.#key = key
    this.#reader = reader
    this.#source = reader.stream.getReader()
    this.#worker = undefined
    this.#ensureStarted()
    this.#host.sink({
      type: 'retry',
      id: this.id,
      kind: this.kind,
      at: sharedNow(),
      attempt: this.#attempts,
      delayMs: 0,
      reason: (failure as { code?: string }).code ?? 'ERR_WORKER_CRASHED',
      upstreamStatus: undefined,
    })
    clearTimeout(this.#deadline)
    this.#deadline = setTimeout(() => this.#queueDeadline(), budgetMs)
  }

  /** The pool is closing and this call is still running: end it like a server shutdown. */
  close(reason: unknown): void {
    this.#shutdown(reason)
  }

  #bind(worker: CallWorker): void {
    if (this.#worker !== undefined) return
    this.#worker = worker
    const pending = this.#pendingShutdown
    this.#pendingShutdown = undefined
    if (pending !== undefined) worker.shutdown(this.key, pending.reason)
  }

  #clientLeft(reason: unknown): void {
    this.#reject(reason)
    if (this.#body !== undefined) tryError(this.#body, reason)
    // The chunk channel's cancel: aborts the worker's call (its client signal) wherever it is, even before its
    // writer opened.
    this.#source.cancel(reason).catch(noop)
  }

  #shutdown(reason: unknown): void {
    if (this.#done) return
    this.#reject(reason)
    if (this.#worker !== undefined) this.#worker.shutdown(this.key, reason)
    else this.#pendingShutdown = { reason }
  }

  /**
   * No worker started the call within the queue budget (it waited in piscina's queue), or no other worker took a
   * re-sent call over within what was left of it.
   */
  #queueDeadline(): void {
    if (this.#head !== PENDING || this.#headSeen || this.#done) return
    // Once a worker has the call, its client enforces the budget (a re-sent one: what is left, CallOptions.resume).
    if (this.#resent ? this.#worker !== undefined : this.#started) return
    const { queueTimeoutMs, queueRetryAfterMs } = this.#host
    const error = new QueueTimeoutError(queueTimeoutMs, queueRetryAfterMs, {
      message: this.#resent
        ? `The call's worker exited, and no other worker took it over within the queue timeout of ${queueTimeoutMs} ms`
        : `No worker started the call within the queue timeout of ${queueTimeoutMs} ms`,
    })
    this.#reject(error)
    this.#recordFailure(error)
    this.#source.cancel(error).catch(noop)
  }

  #resolve(response: Response): void {
    if (this.#head !== PENDING) return
    this.#head = ANSWERED
    clearTimeout(this.#deadline)
    this.#answer.resolve(response)
  }

  #reject(error: unknown): void {
    if (this.#head !== PENDING) return
    this.#head = REJECTED
    clearTimeout(this.#deadline)
    this.#answer.reject(error)
  }

  async #readWhole(status: number, headers: Headers): Promise<void> {
    const parts: Uint8Array[] = []
    let length = 0
    try {
      for (;;) {
        const { done, value } = await this.#source.read()
        if (done) break
        parts.push(value)
        length += value.byteLength
      }
    } catch (error) {
      this.#reject(error)
      return
    }
    this.#resolve(new Response(concatBytes(parts, length), { status, headers }))
  }

  #bodyStream(): ReadableStream<Uint8Array> {
    return new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.#body = controller
        },
        pull: (controller) => this.#pull(controller),
        cancel: (reason) => {
          this.#body = undefined
          return this.#source.cancel(reason)
        },
      },
      { highWaterMark: 0 },
    )
  }

  async #pull(controller: ReadableStreamDefaultController<Uint8Array>): Promise<void> {
    let result: ReadableStreamReadResult<Uint8Array>
    try {
      result = await this.#source.read()
    } catch (error) {
      if (this.#clientSignal?.aborted) return
      // The worker died (or the pool closed): the in-process failure shape, one error event and a clean end —
      // but only on an event boundary. The worker forwards whole events, yet the channel splits a chunk larger than
      // its credit window, so a crash can land inside one (a huge event): an error event appended there would be
      // glued to half an event. Then the only honest ending is a cut connection, never a clean end.
      if (this.#sse && endsAtEventBoundary(this.#tail)) {
        tryEnqueue(controller, sseErrorEvent(error))
        tryClose(controller)
      } else {
        tryError(controller, error)
      }
      return
    }
    if (result.done) tryClose(controller)
    else {
      this.#tail = lastBytes(this.#tail, result.value)
      tryEnqueue(controller, result.value)
    }
  }

  #markEnded(): void {
    this.#ended = true
    for (const unlink of this.#unlink) unlink()
    this.#unlink = []
    this.#host.ended(this)
  }

  /** Records `start` if no worker did (each call has exactly one). */
  #ensureStarted(): void {
    if (this.#started) return
    this.#started = true
    this.#host.sink({ type: 'start', id: this.id, kind: this.kind, at: sharedNow() })
  }

  /** `start` (if the worker never sent it), `error` and `end` for a call its worker did not end. */
  #recordFailure(error: unknown): void {
    const base = { id: this.id, kind: this.kind }
    this.#ensureStarted()
    const { code, message, status } = error as { code?: unknown; message?: unknown; status?: unknown }
    const errorStatus = typeof status === 'number' ? status : undefined
    this.#host.sink({
      type: 'error',
      ...base,
      at: sharedNow(),
      code: typeof code === 'string' ? code : 'internal_error',
      message: typeof message === 'string' ? message : String(error),
      status: errorStatus,
      afterFirstChunk: this.#afterFirstChunk,
    })
    const outcome: CallOutcome = 'error'
    this.#markEnded()
    this.#host.sink({
      type: 'end',
      ...base,
      at: sharedNow(),
      outcome,
      status: this.#head === ANSWERED ? this.#status : errorStatus,
      durationMs: monotonicNow() - this.#startedAt,
      attempts: this.#attempts,
      events: 0,
      bytes: this.#reader.receivedBytes,
      usage: undefined,
    })
  }

  #settle(): void {
    clearTimeout(this.#deadline)
    for (const unlink of this.#unlink) unlink()
    this.#unlink = []
    this.#host.settled(this)
  }
}

function tryEnqueue(controller: ReadableStreamDefaultController<Uint8Array>, chunk: Uint8Array): void {
  try {
    controller.enqueue(chunk)
  } catch {
    // Cancelled or errored by the caller meanwhile.
  }
}

function tryClose(controller: ReadableStreamDefaultController<Uint8Array>): void {
  try {
    controller.close()
  } catch {}
}

function tryError(controller: ReadableStreamDefaultController<Uint8Array>, reason: unknown): void {
  try {
    controller.error(reason)
  } catch {}
}

/** The last (up to) 4 bytes of `previous` followed by `chunk`; cheap per chunk (no copy of the chunk). */
function lastBytes(previous: Uint8Array, chunk: Uint8Array): Uint8Array {
  if (chunk.byteLength >= 4) return chunk.subarray(chunk.byteLength - 4)
  const joined = concatBytes([previous, chunk])
  return joined.subarray(Math.max(0, joined.byteLength - 4))
}

/** Nothing sent yet, or the bytes sent end with a blank line (`\n\n`, `\r\r`, `\r\n\r\n`: WHATWG SSE's event end). */
function endsAtEventBoundary(tail: Uint8Array): boolean {
  const n = tail.byteLength
  if (n === 0) return true
  const last = tail[n - 1]
  const before = tail[n - 2]
  return (last === 0x0a && (before === 0x0a || (before === 0x0d && tail[n - 3] === 0x0a))) || (last === 0x0d && before === 0x0d)
}

function noop(): void {}

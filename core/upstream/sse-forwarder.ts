/**
 * The body of a streaming call: a pull-based ReadableStream over the upstream's SSE body.
 *
 * - Backpressure: the upstream is read only inside `pull()`, i.e. when the consumer wants data, and at most one
 *   chunk waits in our queue (highWaterMark 1). A client that stops reading stops our reads, which stops the
 *   upstream through TCP flow control; memory stays at the socket buffers.
 * - Chunks go out as they came (whole complete events, never re-split per event: cost is per chunk), minus an
 *   unterminated tail held back until its event ends.
 * - The idle timeout runs only while a read of the upstream is pending, so a slow client cannot trip it; each
 *   read restarts it. Heartbeat comments are sent only then too, and only if the consumer has room.
 * - Failures: before the first forwarded byte a retryable one (connection lost, EOF, idle) goes back to the retry
 *   policy, invisibly to the client. After it, or when not retryable, the stream ends with one OpenAI-shaped
 *   error event. Upstream EOF without `[DONE]` is such a failure, never a clean end. An upstream error event
 *   (`data: {"error":…}`) is forwarded as that one error event, and nothing follows it.
 * - Malformed data (not JSON, not `[DONE]`): the complete events before it in the same chunk are forwarded, the
 *   bad event and everything after it are not, then the error event follows. Same for an `onEvent` hook that
 *   throws on an event.
 * - Usage: every valid event's parsed JSON feeds the stream's UsageCounter (./usage.ts), reported in `end`.
 * - Transforms (./transform.ts): a transform may rewrite or drop events. When none did in a chunk, the chunk is
 *   forwarded as is (the default path never re-serialises); a chunk with an edited event is re-encoded, only its
 *   edited events re-serialised (./event-rewrite.ts). A chunk whose events were all dropped forwards nothing.
 * - The client leaving (its signal, or `cancel()`) aborts the upstream at once, even mid-read of a stalled one.
 * - Whatever ends the stream, `#finish()` runs once: timers cleared, upstream aborted unless it completed,
 *   permits released, `end` emitted.
 * @module
 */
import { createParser, type EventSourceMessage, type EventSourceParser } from 'eventsource-parser'
import { onAbort } from '../abort.ts'
import { SluiceError } from '../errors.ts'
import type { Attempts, Connection } from './attempt.ts'
import type { CallTracker } from './call-tracker.ts'
import {
  IdleTimeoutError,
  isRetryable,
  UpstreamMalformedError,
  UpstreamStatusError,
  UpstreamTruncatedError,
} from './errors.ts'
import { EventBoundaryScanner, type EventRegion, parserInput } from './event-boundary.ts'
import { rewriteRegion } from './event-rewrite.ts'
import { HEARTBEAT_EVENT, sseErrorEvent } from './sse-error-event.ts'
import { type EventEdit, type StreamTransform, toEdit, type TransformFactory } from './transform.ts'
import type { UpstreamRequest } from './types.ts'
import { UsageCounter } from './usage.ts'

/** Called for every upstream data event before it is forwarded; throwing ends the stream with an error event. */
export type UpstreamEventHook = (event: EventSourceMessage, call: { id: string }) => void

export interface ForwarderSettings {
  /** 0 disables it. */
  idleTimeoutMs: number
  /** 0 disables it. */
  heartbeatMs: number
  maxEventBytes: number
  onEvent: UpstreamEventHook | undefined
  /** Makes each stream's transform (./transform.ts); undefined: none. */
  transform: TransformFactory | undefined
}

export interface ForwarderInit {
  connection: Connection
  attempts: Attempts
  tracker: CallTracker
  settings: ForwarderSettings
  /** The call's controller: aborting it stops a reconnect in progress. */
  call: AbortController
  /** The client's own signal, to tell "client left" (no error event) from shutdown (error event). */
  clientSignal: AbortSignal | undefined
  /** The request, for the transform's context. */
  request: UpstreamRequest
}

/** How long to keep reading after `[DONE]` for the upstream's EOF, so its connection can be reused. */
const DRAIN_AFTER_DONE_MS = 1_000

interface Verdict {
  /** Offset in the region up to which bytes are forwarded. */
  forwardEnd: number
  dataEvents: number
  done: boolean
  failure: unknown
  /** Events a transform rewrote (new data) or dropped (null), by index in the region; undefined: none. */
  edits?: Map<number, EventEdit> | undefined
}

export function forwardSse(init: ForwarderInit): ReadableStream<Uint8Array> {
  return new SseForwarder(init).stream
}

class SseForwarder {
  readonly stream: ReadableStream<Uint8Array>
  readonly #attempts: Attempts
  readonly #tracker: CallTracker
  readonly #settings: ForwarderSettings
  readonly #call: AbortController
  readonly #clientSignal: AbortSignal | undefined
  readonly #request: UpstreamRequest
  readonly #decoder = new TextDecoder()
  readonly #parsed: EventSourceMessage[] = []
  readonly #parser: EventSourceParser = createParser({ onEvent: (event) => this.#parsed.push(event) })
  #controller!: ReadableStreamDefaultController<Uint8Array>
  #connection: Connection
  #reader: ReadableStreamDefaultReader<Uint8Array>
  #scanner: EventBoundaryScanner
  #finished = false
  #disposeAbort: () => void = noop
  #usage = new UsageCounter()
  /** This stream's transform: undefined until its first event, null when there is none. */
  #transform: StreamTransform | null | undefined
  /** The bearer credential sent upstream, never to be echoed back to the client in an error event. */
  readonly #secret: string | undefined

  constructor(init: ForwarderInit) {
    this.#attempts = init.attempts
    this.#tracker = init.tracker
    this.#settings = init.settings
    this.#call = init.call
    this.#clientSignal = init.clientSignal
    this.#request = init.request
    this.#secret = bearerToken(init.request.headers)
    this.#tracker.usage = this.#usage
    this.#connection = init.connection
    this.#reader = readerOf(init.connection)
    this.#scanner = new EventBoundaryScanner(init.settings.maxEventBytes)
    this.stream = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.#controller = controller
        },
        pull: () => this.#pull(),
        cancel: (reason) => this.#finish('disconnect', reason, { errorConsumer: false }),
      },
      { highWaterMark: 1 },
    )
    // The call signal fires for the client leaving and for shutdown; only the latter deserves an error event.
    this.#disposeAbort = onAbort(init.call.signal, (reason) => {
      if (this.#clientSignal?.aborted) this.#finish('disconnect', reason, { errorConsumer: true })
      else this.#finish('error', reason)
    })
  }

  async #pull(): Promise<void> {
    while (!this.#finished) {
      try {
        if (await this.#pump()) return
      } catch (error) {
        if (this.#finished) return
        const final = await this.#retryBeforeFirstByte(error)
        if (this.#finished) return
        if (final !== undefined) {
          this.#finish('error', final)
          return
        }
      }
    }
  }

  /** Reads one upstream chunk and forwards its complete events. True when something was enqueued or it ended. */
  async #pump(): Promise<boolean> {
    const { done, value } = await this.#read()
    if (this.#finished) return true
    if (done) throw new UpstreamTruncatedError('The upstream ended the stream without `data: [DONE]`')
    const region = this.#scanner.push(value)
    if (region === undefined) return false
    const verdict = this.#inspect(region)
    let forwarded = 0
    if (verdict.forwardEnd > 0) {
      const bytes = verdict.edits === undefined
        ? region.bytes.subarray(0, verdict.forwardEnd)
        : rewriteRegion(region, verdict.forwardEnd, verdict.edits, this.#parsed)
      forwarded = bytes.length
      if (forwarded > 0) {
        this.#enqueue(bytes)
        this.#tracker.forwarded(forwarded, verdict.dataEvents)
      }
    }
    if (verdict.failure !== undefined) throw verdict.failure
    if (verdict.done) {
      this.#finish('completed', undefined)
      return true
    }
    return forwarded > 0
  }

  /** One upstream read, under the idle timeout and with heartbeats while it is pending. */
  async #read(): Promise<ReadableStreamReadResult<Uint8Array>> {
    const { idleTimeoutMs, heartbeatMs } = this.#settings
    const connection = this.#connection
    const reader = this.#reader
    const idle = idleTimeoutMs > 0
      ? setTimeout(() => stopReading(reader, connection, new IdleTimeoutError(idleTimeoutMs)), idleTimeoutMs)
      : undefined
    const heartbeat = heartbeatMs > 0 ? setInterval(() => this.#heartbeat(), heartbeatMs) : undefined
    try {
      const result = await this.#reader.read()
      // An aborted body may also just end: the abort reason is the truth.
      if (connection.controller.signal.aborted) throw connection.controller.signal.reason
      return result
    } catch (error) {
      if (connection.controller.signal.aborted) throw connection.controller.signal.reason
      throw new UpstreamTruncatedError('The upstream connection was lost mid-stream', { cause: error })
    } finally {
      clearTimeout(idle)
      clearInterval(heartbeat)
    }
  }

  /**
   * Parses the region's events with eventsource-parser (one decode, one feed: cost per chunk, not per event) and
   * decides how much of it to forward. Only when an event stops the stream ([DONE], bad data, a throwing hook)
   * is its byte offset needed; `#segmentOf` finds it then.
   */
  #inspect(region: EventRegion): Verdict {
    this.#parsed.length = 0
    this.#parser.feed(parserInput(this.#decoder.decode(region.bytes)))
    let dataEvents = 0
    let edits: Map<number, EventEdit> | undefined
    for (let index = 0; index < this.#parsed.length; index++) {
      const event = this.#parsed[index]!
      if (event.data === '[DONE]') {
        const end = index === this.#parsed.length - 1 ? lastEventEnd(region) : undefined
        return { forwardEnd: end ?? segmentOf(region, index).end, dataEvents, done: true, failure: undefined, edits }
      }
      let failure: unknown
      let data: unknown
      try {
        data = JSON.parse(event.data)
      } catch (cause) {
        failure = new UpstreamMalformedError('The upstream sent an event whose data is neither JSON nor [DONE]', {
          cause,
        })
      }
      let edit: EventEdit | undefined
      if (failure === undefined) {
        this.#usage.observe(data)
        try {
          this.#settings.onEvent?.(event, { id: this.#tracker.id })
          if (!isErrorEvent(data)) edit = this.#edit(event, data)
        } catch (error) {
          failure = error
        }
      }
      if (failure !== undefined) {
        return { forwardEnd: segmentOf(region, index).start, dataEvents, done: false, failure, edits }
      }
      if (isErrorEvent(data)) {
        // The upstream reported its own failure: its event is forwarded as the stream's one error event and the
        // stream ends there; its EOF without [DONE] that follows is the consequence, not a second failure.
        // An upstream that echoes the credential it was sent (some quote the bad key) gets it redacted.
        const secret = this.#secret
        if (secret !== undefined && event.data.includes(secret)) {
          edits ??= new Map()
          edits.set(index, event.data.replaceAll(secret, '[redacted]'))
        }
        const end = segmentOf(region, index).end
        return { forwardEnd: end, dataEvents: dataEvents + 1, done: false, failure: new UpstreamErrorEvent(), edits }
      }
      if (edit !== undefined) (edits ??= new Map()).set(index, edit)
      if (edit !== null) dataEvents++
    }
    return { forwardEnd: region.bytes.length, dataEvents, done: false, failure: undefined, edits }
  }

  /** Runs the stream's transform on one event (making the transform on the first); undefined: no edit. */
  #edit(event: EventSourceMessage, json: unknown): EventEdit | undefined {
    if (this.#transform === undefined) {
      const factory = this.#settings.transform
      this.#transform = factory === undefined ? null : factory({ id: this.#tracker.id, request: this.#request }) ?? null
    }
    if (this.#transform === null) return undefined
    return toEdit(this.#transform.event({ data: event.data, json, event: event.event, id: event.id }))
  }

  /**
   * Nothing reached the client yet, so a retryable failure may be retried invisibly. Resolves undefined when a
   * new connection is in place, or with the failure that ends the stream.
   */
  async #retryBeforeFirstByte(failure: unknown): Promise<unknown> {
    if (this.#tracker.afterFirstChunk || !isRetryable(failure)) return failure
    this.#dropConnection(failure)
    try {
      const connection = await this.#attempts.reconnect(failure)
      if (this.#finished) {
        connection.abort(this.#call.signal.reason)
        connection.close()
        return undefined
      }
      const { status } = connection.response
      if (!connection.response.ok || !isEventStream(connection.response)) {
        connection.abort(failure)
        connection.close()
        // The client already has a 200 and no byte: all that is left to send is an error event.
        return connection.response.ok
          ? new UpstreamMalformedError(`The upstream answered a retry with ${status} but no event stream`)
          : new UpstreamStatusError(status, undefined, '')
      }
      connection.disarm()
      this.#connection = connection
      this.#reader = readerOf(connection)
      this.#scanner = new EventBoundaryScanner(this.#settings.maxEventBytes)
      this.#parser.reset()
      // Nothing was forwarded: the new attempt's stream starts over for the usage count and the transform.
      this.#usage = new UsageCounter()
      this.#tracker.usage = this.#usage
      this.#transform = undefined
      return undefined
    } catch (error) {
      return error
    }
  }

  #dropConnection(reason: unknown): void {
    this.#connection.abort(reason)
    this.#reader.cancel(reason).catch(noop)
    this.#connection.close()
  }

  #heartbeat(): void {
    if (this.#finished || (this.#controller.desiredSize ?? 0) <= 0) return
    this.#enqueue(HEARTBEAT_EVENT)
  }

  #enqueue(bytes: Uint8Array): void {
    try {
      this.#controller.enqueue(bytes)
    } catch {
      // The consumer cancelled in the meantime; #finish has run or is about to.
    }
  }

  /** Ends the stream exactly once: consumer side, upstream side, permits, telemetry. */
  #finish(outcome: 'completed' | 'error' | 'disconnect', reason: unknown, { errorConsumer = false } = {}): void {
    if (this.#finished) return
    this.#finished = true
    this.#disposeAbort()
    const connection = this.#connection
    try {
      if (outcome === 'completed') {
        tryClose(this.#controller)
        drainToEnd(this.#reader, connection)
      } else {
        if (outcome === 'error') {
          this.#tracker.failed(reason)
          if (!(reason instanceof UpstreamErrorEvent)) this.#enqueue(sseErrorEvent(reason))
          tryClose(this.#controller)
        } else {
          this.#tracker.disconnected()
          if (errorConsumer) tryError(this.#controller, reason)
        }
        this.#dropConnection(reason)
        // Stops a reconnect that may be waiting for permits or sleeping.
        if (!this.#call.signal.aborted) this.#call.abort(reason)
      }
    } finally {
      connection.close()
      this.#tracker.end(outcome, 200)
    }
  }
}

/** The upstream sent an OpenAI error event (`data: {"error":…}`), already forwarded to the client as it was. */
class UpstreamErrorEvent extends SluiceError {
  readonly status = 502
  readonly retryAfterMs = undefined
  readonly retryable = false
  constructor() {
    super('ERR_UPSTREAM', 'The upstream ended the stream with an error event')
  }
}

/** The token of an `Authorization: Bearer …` request header (any case), if long enough to be a secret. */
function bearerToken(headers: Record<string, string> | undefined): string | undefined {
  if (headers === undefined) return undefined
  for (const name in headers) {
    if (name.toLowerCase() !== 'authorization') continue
    const token = /^bearer\s+(\S+)\s*$/i.exec(headers[name] ?? '')?.[1]
    // A one- or two-character "key" would redact ordinary text; no real API key is that short.
    return token !== undefined && token.length >= 8 ? token : undefined
  }
  return undefined
}

function isErrorEvent(data: unknown): boolean {
  return typeof data === 'object' && data !== null && !Array.isArray(data) && 'error' in data
}

/** The byte range of the segment (one complete event, or comments) holding event number `index` of `region`. */
function segmentOf(region: EventRegion, index: number): { start: number; end: number } {
  const decoder = new TextDecoder()
  let seen = 0
  const parser = createParser({ onEvent: () => seen++ })
  let start = 0
  for (const end of region.ends) {
    parser.feed(parserInput(decoder.decode(region.bytes.subarray(start, end))))
    if (seen > index) return { start, end }
    start = end
  }
  return { start, end: region.bytes.length }
}

const LF = 0x0a
const CR = 0x0d
const COLON = 0x3a

/**
 * Where the region's last event ends, without re-parsing: the end of the last segment with a `data` line (a
 * segment dispatches an event exactly when it has one; comment-only or id/retry-only segments do not). For the
 * usual `[DONE]`, the last event of its chunk, this replaces `segmentOf`'s second parse of the whole chunk (1.8%
 * of the binary's CPU at 500 concurrent 0 ms streams, --cpu-prof). Undefined when no segment has a plain `data`
 * line (e.g. one behind a BOM): the caller falls back to `segmentOf`.
 */
function lastEventEnd(region: EventRegion): number | undefined {
  const { bytes, ends } = region
  for (let segment = ends.length - 1; segment >= 0; segment--) {
    const start = segment === 0 ? 0 : ends[segment - 1]!
    if (hasDataLine(bytes, start, ends[segment]!)) return ends[segment]
  }
  return undefined
}

/** Whether a line of `bytes[start, end)` is a `data` field: `data` then `:`, a line end, or the end. */
function hasDataLine(bytes: Uint8Array, start: number, end: number): boolean {
  let line = start
  while (line < end) {
    if (
      line + 4 <= end && bytes[line] === 0x64 && bytes[line + 1] === 0x61 && bytes[line + 2] === 0x74 &&
      bytes[line + 3] === 0x61
    ) {
      const next = line + 4 === end ? LF : bytes[line + 4]
      if (next === COLON || next === LF || next === CR) return true
    }
    while (line < end && bytes[line] !== LF && bytes[line] !== CR) line++
    if (line < end && bytes[line] === CR && bytes[line + 1] === LF) line++
    line++
  }
  return false
}

function readerOf(connection: Connection): ReadableStreamDefaultReader<Uint8Array> {
  const body = connection.response.body
  if (!body) throw new UpstreamTruncatedError('The upstream answered without a body')
  return body.getReader()
}

export function isEventStream(response: Response): boolean {
  return (response.headers.get('content-type') ?? '').toLowerCase().includes('text/event-stream')
}

/**
 * Aborts the connection AND cancels its body reader. The abort alone does not always end a pending read: on
 * Node 20 fetch's signal reaches the body only through undici's Request, which follows it by WeakRef, so once
 * that Request is collected (with `redirect: 'error'` nothing else holds it after the headers) a GC disconnects
 * them, and a stalled stream would never time out (found by the chaos soak; test/chaos/gc-cancel-scenario.ts).
 */
function stopReading(reader: ReadableStreamDefaultReader<Uint8Array>, connection: Connection, reason: unknown): void {
  connection.abort(reason)
  reader.cancel(reason).catch(noop)
}

/** After `[DONE]`: read to EOF in the background (bounded), so the upstream connection goes back to the pool. */
function drainToEnd(reader: ReadableStreamDefaultReader<Uint8Array>, connection: Connection): void {
  const timer = setTimeout(
    () => stopReading(reader, connection, new UpstreamTruncatedError('No EOF after [DONE]')),
    DRAIN_AFTER_DONE_MS,
  )
  void (async () => {
    try {
      while (!(await reader.read()).done);
    } catch {
      // Aborted by the timer, or the connection dropped after [DONE]: nothing was lost.
    } finally {
      clearTimeout(timer)
    }
  })()
}

function tryClose(controller: ReadableStreamDefaultController<Uint8Array>): void {
  try {
    controller.close()
  } catch {
    // Already cancelled by the consumer.
  }
}

function tryError(controller: ReadableStreamDefaultController<Uint8Array>, reason: unknown): void {
  try {
    controller.error(reason)
  } catch {
    // Already closed or cancelled.
  }
}

function noop(): void {}

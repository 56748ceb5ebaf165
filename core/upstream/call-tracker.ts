/**
 * Per-call bookkeeping: timings on the monotonic clock, counters, and the lifecycle events sent to the sink.
 * `end()` runs once whatever path gets there first; the sink can never throw into the call.
 * @module
 */
import { monotonicNow, sharedNow } from '../clock.ts'
import type { CallKind, CallOutcome, StreamEvent, StreamEventSink } from '../telemetry/events.ts'
import type { UsageCounter } from './usage.ts'

type Payload<T extends StreamEvent['type']> = Omit<Extract<StreamEvent, { type: T }>, 'type' | 'id' | 'kind' | 'at'>

export class CallTracker {
  readonly id: string
  readonly kind: CallKind
  attempts = 0
  events = 0
  bytes = 0
  /** The stream's usage counter (set by the forwarder); reported in `end`. */
  usage: UsageCounter | undefined
  readonly #sink: StreamEventSink
  readonly #onEnd: () => void
  readonly #startedAt: number
  #firstChunkSent = false
  #ended = false

  /** `resume`: the call began elsewhere (CallOptions.resume): its attempts and time so far count here. */
  constructor(
    id: string,
    kind: CallKind,
    sink: StreamEventSink,
    onEnd: () => void,
    resume?: { attempts: number; elapsedMs: number },
  ) {
    this.id = id
    this.kind = kind
    this.attempts = resume?.attempts ?? 0
    this.#startedAt = monotonicNow() - (resume?.elapsedMs ?? 0)
    this.#sink = sink
    this.#onEnd = onEnd
    this.#emit('start', {})
  }

  get sinceStartMs(): number {
    return monotonicNow() - this.#startedAt
  }

  get afterFirstChunk(): boolean {
    return this.#firstChunkSent
  }

  get ended(): boolean {
    return this.#ended
  }

  acquired(queueWaitMs: number): void {
    this.#emit('acquire', { attempt: this.attempts, queueWaitMs })
  }

  retry(delayMs: number, error: unknown): void {
    const { code, upstreamStatus } = error as { code?: unknown; upstreamStatus?: unknown }
    this.#emit('retry', {
      attempt: this.attempts,
      delayMs,
      reason: typeof code === 'string' ? code : 'internal_error',
      upstreamStatus: typeof upstreamStatus === 'number' ? upstreamStatus : undefined,
    })
  }

  /** Counts forwarded bytes and data events; the first call emits `firstChunk`. */
  forwarded(bytes: number, events: number): void {
    this.bytes += bytes
    this.events += events
    if (this.#firstChunkSent) return
    this.#firstChunkSent = true
    this.#emit('firstChunk', { attempt: this.attempts, sinceStartMs: this.sinceStartMs })
  }

  failed(error: unknown): void {
    const { code, message, status } = error as { code?: unknown; message?: unknown; status?: unknown }
    this.#emit('error', {
      code: typeof code === 'string' ? code : 'internal_error',
      message: typeof message === 'string' ? message : String(error),
      status: typeof status === 'number' ? status : undefined,
      afterFirstChunk: this.#firstChunkSent,
    })
  }

  disconnected(): void {
    this.#emit('disconnect', { afterFirstChunk: this.#firstChunkSent, sinceStartMs: this.sinceStartMs })
  }

  /** Emits `end` and runs `onEnd` the first time; later calls do nothing. */
  end(outcome: CallOutcome, status: number | undefined): void {
    if (this.#ended) return
    this.#ended = true
    try {
      this.#onEnd()
    } finally {
      this.#emit('end', {
        outcome,
        status,
        durationMs: this.sinceStartMs,
        attempts: this.attempts,
        events: this.events,
        bytes: this.bytes,
        usage: this.usage?.result(),
      })
    }
  }

  #emit<T extends StreamEvent['type']>(type: T, payload: Payload<T>): void {
    const event = { type, id: this.id, kind: this.kind, at: sharedNow(), ...payload } as StreamEvent
    try {
      this.#sink(event)
    } catch (error) {
      // A sink is telemetry (metrics, a worker's postMessage): losing one event beats breaking the call.
      console.error(`sluice: the event sink threw on '${type}' of call ${this.id}`, error)
    }
  }
}

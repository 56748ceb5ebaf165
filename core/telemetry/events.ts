/**
 * Lifecycle events of an upstream call: plain, structured-cloneable data, so a worker can post them to the main
 * thread and one telemetry object there records metrics and emits them. `at` is `sharedNow()` (epoch ms that
 * agree across threads); every duration (`…Ms`) was measured with the monotonic clock of the thread that ran the
 * call, so it stays correct wherever the event is recorded.
 *
 * Order per call: `start`, then any of `acquire` / `retry` / `firstChunk`, then at most one of `error` /
 * `disconnect`, then exactly one `end`.
 * @module
 */
import type { StreamUsage } from '../upstream/usage.ts'

/** `stream`: an SSE call; `buffered`: a non-streaming call. */
export type CallKind = 'stream' | 'buffered'

interface BaseEvent {
  /** The call's id (from `CallOptions.id` or generated). */
  id: string
  kind: CallKind
  /** `sharedNow()` when it happened. */
  at: number
}

export interface StartEvent extends BaseEvent {
  type: 'start'
}

/** Rate-limit token and permits granted for one attempt. */
export interface AcquireEvent extends BaseEvent {
  type: 'acquire'
  attempt: number
  /** Time spent waiting for the rate limiter and the semaphore for this attempt. */
  queueWaitMs: number
}

/** An attempt failed before the first byte and another one follows after `delayMs`. */
export interface RetryEvent extends BaseEvent {
  type: 'retry'
  /** The attempt that failed (1-based). */
  attempt: number
  delayMs: number
  /** Error code of the failure, e.g. `ERR_UPSTREAM_STATUS`. */
  reason: string
  /** The upstream status, if it answered. */
  upstreamStatus: number | undefined
}

/** The first upstream bytes went to the consumer. */
export interface FirstChunkEvent extends BaseEvent {
  type: 'firstChunk'
  attempt: number
  /** From the call to the first forwarded byte (queueing and retries included). */
  sinceStartMs: number
}

/** The call failed: rejected before any byte, or ended with an SSE error event. (Not named ErrorEvent: DOM has one.) */
export interface CallErrorEvent extends BaseEvent {
  type: 'error'
  /** Error code (`ERR_QUEUE_TIMEOUT`, `ERR_IDLE_TIMEOUT`, …) or `internal_error` for anything else. */
  code: string
  message: string
  /** The HTTP status the error carries (meaningful before the first byte). */
  status: number | undefined
  afterFirstChunk: boolean
}

/** The client left (its signal aborted or the body was cancelled). */
export interface DisconnectEvent extends BaseEvent {
  type: 'disconnect'
  afterFirstChunk: boolean
  sinceStartMs: number
}

export type CallOutcome = 'completed' | 'error' | 'disconnect'

/** The call is over and holds no permits any more. Exactly one per `start`. */
export interface EndEvent extends BaseEvent {
  type: 'end'
  outcome: CallOutcome
  /** What the caller got: 200 for a stream, the upstream status for a passed-through answer, the error status. */
  status: number | undefined
  durationMs: number
  attempts: number
  /** SSE data events forwarded (`[DONE]` not counted); 0 for buffered calls. */
  events: number
  /** Upstream body bytes forwarded. */
  bytes: number
  /**
   * Token usage of a stream: the upstream's own `usage` when it sent one, else counted content deltas
   * (core/upstream/usage.ts). Undefined for buffered calls and for streams that forwarded no data event.
   */
  usage: StreamUsage | undefined
}

export type StreamEvent =
  | StartEvent
  | AcquireEvent
  | RetryEvent
  | FirstChunkEvent
  | CallErrorEvent
  | DisconnectEvent
  | EndEvent

/** The nanoevents map: one name per event type, plus `event` for all of them. */
export interface StreamEvents {
  start: (event: StartEvent) => void
  acquire: (event: AcquireEvent) => void
  retry: (event: RetryEvent) => void
  firstChunk: (event: FirstChunkEvent) => void
  error: (event: CallErrorEvent) => void
  disconnect: (event: DisconnectEvent) => void
  end: (event: EndEvent) => void
  event: (event: StreamEvent) => void
}

/** Where a call sends its events: a telemetry object's `record`, or a worker's `postMessage`. */
export type StreamEventSink = (event: StreamEvent) => void

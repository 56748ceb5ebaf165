/**
 * The worker pool's cross-thread protocol: what the main thread and each worker say to each other besides
 * piscina's own task messages and the chunk channel's frames (./chunk-channel-protocol.ts).
 *
 * Startup. piscina starts every worker with `workerData: WorkerInit` and loads ./pool-worker.ts, whose top level:
 *  1. attaches to the shared semaphore(s) and rate limiter (`SharedSemaphore.from(handle)`: its own owner ids);
 *  2. creates a MessageChannel and keeps one end (the chunk channel's ChunkWriterHub and the control messages
 *     below share it); posts the other end to the main thread in a HELLO on `parentPort` (piscina re-emits every
 *     message that is not its own "ready" as the pool's 'message' event) with its `threadId`, owner ids and
 *     heartbeat word. HELLO goes first, before anything can fail, so main can always reclaim what it may take;
 *  3. loads the transform module and builds its upstream client, then posts READY, or FAILED with the error.
 * Main attaches the port to its ChunkReaderHub, finds the Worker by `threadId` in `piscina.threads` and watches
 * its 'exit'. A HELLO from a thread that already exited is answered by reclaiming its owners at once.
 *
 * Calls. One piscina task per call (`CallTask`), pending for the whole call, so piscina's per-worker task count
 * is the worker's live calls (load balancing, `concurrentTasksPerWorker = streamsPerWorker`). A task that waited
 * in piscina's queue past its `notAfter` is refused before it takes a permit (main has already rejected it).
 * Never a piscina `signal` (it would give the task a whole worker and kill the worker on abort). The worker
 * opens the call's chunk writer first (so a cancel reaches it even while it waits for permits), runs the
 * in-process upstream call with the writer's signal as the client's signal, and tells main over the control port:
 *   EVENT  every lifecycle event, `id` = the call's key (main puts the caller's id back: keys are unique, ids need
 *          not be), in order;
 *   HEAD   `key, status, headers` once the upstream answered; the body follows as the chunk stream;
 *   DONE   `key, error?` when the call is over in the worker: after its `end` event and its last chunk; `error`
 *          (wire form) when it was rejected before any byte — main rebuilds the same error class from `code`.
 * All three travel on one port, so main sees a call's EVENTs, HEAD and DONE in order. They are batched per turn
 * of the worker's event loop (like the chunk frames): one `postMessage` for every call's news of that turn.
 * Control and chunk batches of one turn may leave in either order, so DONE is posted a turn after the call's last
 * chunk frame: when main sees DONE it has every byte of the call.
 * piscina's own task result is not used (it travels on another port, so it could overtake them); its rejection
 * means the worker died.
 *
 * Main → worker on the same port: SHUTDOWN `key, reason` (the caller's shutdown signal fired: the call ends with
 * an error event / rejects, as in-process). A client leaving is not a control message: it is the chunk channel's
 * CANCEL, which aborts the writer's signal, i.e. the call's client signal in the worker.
 *
 * Liveness. Each worker adds 1 to its heartbeat word (an Int32 in a SharedArrayBuffer it sent in HELLO) every
 * tick of an unref'd timer. A worker whose event loop is stuck (a transform in a busy loop) stops ticking; main's
 * watchdog terminates it after `workerStallTimeoutMs`. No message is needed, so a stuck worker costs nothing to
 * detect and a busy main thread cannot make a healthy worker look stuck (main compares values, not arrival times).
 *
 * Death (exception, `process.exit`, OOM, terminate, watchdog): on the Worker's 'exit' main reclaims the worker's
 * owner ids on every shared semaphore (their permits and queued acquires come back), fails the worker's chunk
 * link (streams past their first byte end with an SSE error event), and piscina rejects the worker's pending
 * tasks: calls not yet answered reject with a 502 WorkerCrashedError, and main records `error` + `end` for every
 * call whose worker never sent its `end`, so telemetry stays balanced. piscina starts a replacement worker.
 * @module
 */
import type { DemoUpstreamOptions } from '../demo-upstream.ts'
import type { SharedRateLimiterHandle } from '../rate-limiter.ts'
import type { SemaphoreHandle } from '../semaphore.ts'
import type { StreamEvent } from '../telemetry/events.ts'
import type { RetryOptions } from '../upstream/retry-policy.ts'
import type { UpstreamRequest } from '../upstream/types.ts'
import type { ChunkChannelHandle } from './chunk-channel-protocol.ts'

/** First element of every control message and of HELLO; the chunk channel's hubs ignore other tags. */
export const POOL_TAG = 'sluice-pool/1'

/** The upstream client options a worker builds its client from: plain data only. */
export interface WorkerClientOptions {
  streamWeight: number | undefined
  bufferedWeight: number | undefined
  rateLimitCost: number | undefined
  queueTimeoutMs: number | undefined
  queueRetryAfterMs: number | undefined
  idleTimeoutMs: number | undefined
  totalTimeoutMs: number | undefined
  heartbeatMs: number | undefined
  maxEventBytes: number | undefined
  retry: Omit<RetryOptions, 'random'> | undefined
}

/** piscina's `workerData`: the same for every worker. */
export interface WorkerInit {
  semaphore: SemaphoreHandle
  bufferedSemaphore: SemaphoreHandle | undefined
  rateLimiter: SharedRateLimiterHandle | undefined
  client: WorkerClientOptions
  /** URL of the transform module, or undefined. */
  transform: string | undefined
  /** `demo`: each worker serves calls from its own embedded demo model (`createDemoUpstream`). */
  upstream: 'demo' | undefined
  /** URL of the module whose default export makes the worker's fetch (./transform-loader.ts), or undefined. */
  fetchModule: string | undefined
  demo: DemoUpstreamOptions | undefined
  /** The resolved queue budget, for a worker refusing a call past its `notAfter`. */
  queueTimeoutMs: number
  queueRetryAfterMs: number
  /** Heartbeat period of the worker, ms. */
  heartbeatTickMs: number
  /** Node running from .ts sources: register tsx's ESM loader before importing the transform (./pool-worker.ts). */
  registerTsx: boolean
}

/** Worker → main on `parentPort`, once. The port is in the transfer list. */
export interface HelloMessage {
  tag: typeof POOL_TAG
  threadId: number
  /** Owner ids of this worker on `[semaphore, bufferedSemaphore?]`. */
  owners: number[]
  port: unknown
  heartbeat: SharedArrayBuffer
}

/** One piscina task: one call. */
export interface CallTask {
  kind: 'stream' | 'buffered'
  key: number
  channel: ChunkChannelHandle
  request: UpstreamRequest
  /**
   * `sharedNow()` past which the call must not start: main rejects it with a QueueTimeoutError then if no worker
   * started it (it waited in piscina's queue), and a worker that gets it later refuses it before taking a permit.
   * Undefined for a call made while the pool was starting (startup is not charged to the queue budget).
   */
  notAfter: number | undefined
  /**
   * A call re-sent after its worker died before the upstream answered: the attempts made, and the `sharedNow()`
   * its queue budget started at. The worker resumes it (CallOptions.resume) with the time elapsed since then.
   */
  resume?: { attempts: number; budgetStartedAt: number }
}

export const READY = 1
export const FAILED = 2
export const EVENT = 3
export const HEAD = 4
export const DONE = 5
export const SHUTDOWN = 6

export type ControlItem =
  | [typeof READY]
  | [typeof FAILED, unknown]
  | [typeof EVENT, StreamEvent]
  | [typeof HEAD, number, number, [string, string][]]
  | [typeof DONE, number, unknown]
  | [typeof SHUTDOWN, number, unknown]

/** A control message: `[POOL_TAG, items]`. */
export type ControlMessage = [typeof POOL_TAG, ControlItem[]]

export function isControlMessage(data: unknown): data is ControlMessage {
  return Array.isArray(data) && data[0] === POOL_TAG
}

export function isHello(data: unknown): data is HelloMessage {
  return typeof data === 'object' && data !== null && (data as { tag?: unknown }).tag === POOL_TAG
}

/**
 * The contracts of the streaming call. Limits are typed structurally so SharedSemaphore and SharedRateLimiter
 * (or any per-process equivalent) plug in without an import cycle, and requests are plain data so a worker pool
 * can `postMessage` them and a retry can send them again.
 * @module
 */

/** Options every limiter's `acquire()` takes. */
export interface AcquireOptions {
  /** Aborting leaves the queue; rejects with `signal.reason`. */
  signal?: AbortSignal
  /** Longest wait in ms; the limiter rejects with a TimeoutError-like error after it. */
  timeoutMs?: number
}

/** Held permits; `release()` gives them back. */
export interface Permit {
  release(): void
}

/** A weighted semaphore (SharedSemaphore satisfies it). */
export interface PermitSource {
  acquire(weight: number, options?: AcquireOptions): Promise<Permit>
}

/** A rate limiter (SharedRateLimiter satisfies it): resolves when `tokens` may be spent. */
export interface TokenSource {
  acquire(tokens: number, options?: AcquireOptions): Promise<unknown>
}

/** Something whose free permits can be observed (for the `permits_in_use` gauge). */
export interface PermitGaugeSource {
  readonly capacity: number
  readonly available: number
}

/** A re-sendable upstream request: plain data, structured-cloneable. */
export interface UpstreamRequest {
  /** Absolute http(s) URL. */
  url: string
  /** Default `POST`. */
  method?: string
  headers?: Record<string, string>
  /** Sent again as is on every attempt. */
  body?: string
}

/** Per-call options of `stream()` and `complete()`. */
export interface CallOptions {
  /** The client's signal: aborts the upstream at once, queued or streaming; never produces an error event. */
  signal?: AbortSignal
  /**
   * The server's shutdown signal: rejects a queued call with its reason, and ends a live stream with an
   * SSE error event built from the reason (its `message`, `type` and `code` when it has them).
   */
  shutdownSignal?: AbortSignal
  /** Correlation id for lifecycle events. Default: a generated one. */
  id?: string
  /**
   * Continues a call that another runner started and lost before the upstream answered — the worker pool re-sends
   * a call whose worker died. The `attempts` already made count against `retry.maxAttempts` and the next one is
   * numbered on from them; the queue budget, the duration and the time to first chunk count from `elapsedMs` ago.
   * The call's `start` event is emitted again (the runner that resumes drops it). Default: a new call.
   */
  resume?: { attempts: number; elapsedMs: number }
}

/**
 * Options of `createStreamRunner()` / `createWorkerPool()`, validated once on the main thread with the project's
 * message shape. With `workers > 0` everything a worker needs must cross threads: limiters as handles (so they
 * must be SharedSemaphore / SharedRateLimiter), the rest as plain data, the transform as a module URL; functions
 * (`fetch`, `onEvent`, `retry.random`) cannot, and are refused with a message naming the alternative.
 * @module
 */
import { availableParallelism } from 'node:os'
import type { DemoUpstreamOptions } from '../demo-upstream.ts'
import { SharedRateLimiter } from '../rate-limiter.ts'
import { SharedSemaphore } from '../semaphore.ts'
import type { StreamEventSink } from '../telemetry/events.ts'
import type { StreamTelemetry } from '../telemetry/stream-telemetry.ts'
import { resolveOptions, type UpstreamClientOptions } from '../upstream/options.ts'
import type { PermitSource, TokenSource } from '../upstream/types.ts'
import { durationMs, invalidOption, nonNegativeInteger, positiveInteger } from '../validate.ts'
import type { WorkerInit } from './pool-protocol.ts'
import { moduleUrl, transformUrl } from './transform-loader.ts'

export interface StreamRunnerOptions extends Omit<UpstreamClientOptions, 'transform' | 'telemetry'> {
  /**
   * Worker threads running the upstream calls; 0 runs them in-process (same API and semantics). Default: the
   * machine's parallelism (`navigator.hardwareConcurrency`, else `os.availableParallelism()`).
   */
  workers?: number
  /** Calls one worker runs at once (piscina's `concurrentTasksPerWorker`); I/O-bound, so many. Default 256. */
  streamsPerWorker?: number
  /**
   * A transform module (file path or URL) whose default export makes each stream's transform; loaded with
   * `import()` in every worker, or in-process with `workers: 0`. Contract: core/upstream/transform.ts.
   */
  transform?: string | URL
  /** `demo`: calls go to an embedded demo model (`createDemoUpstream`), one per worker. Default: `fetch`. */
  upstream?: 'demo'
  /**
   * A module (file path or URL) whose default export makes the fetch upstream calls use (`() => fetch`): a
   * function cannot cross threads, a module can. Loaded once per worker, or once in-process with `workers: 0`.
   * The Node binary passes sluice/node's undici-based one. Default: the global fetch.
   */
  fetchModule?: string | URL
  /** Pacing of the demo model. */
  demo?: DemoUpstreamOptions
  /** Where lifecycle events of all workers are recorded, on the main thread. Default: `createStreamTelemetry()`. */
  telemetry?: StreamTelemetry | StreamEventSink
  /**
   * A worker whose event loop does not turn for this long (e.g. a transform in a busy loop) is terminated and
   * replaced; its calls fail like a crash. Default 10000 ms.
   */
  workerStallTimeoutMs?: number
  /** Chunk-channel credit per stream: bytes a worker may send that main has not handed to the client. 64 KiB. */
  window?: number
}

export interface WorkerPoolOptions extends StreamRunnerOptions {
  semaphore: SharedSemaphore
  bufferedSemaphore?: SharedSemaphore
  rateLimiter?: SharedRateLimiter
}

/** What every worker is started with (as plain data, ./pool-protocol.ts), plus what only the main thread uses. */
export interface ResolvedPoolOptions extends
  Pick<WorkerInit, 'client' | 'transform' | 'upstream' | 'fetchModule' | 'demo' | 'queueTimeoutMs' | 'queueRetryAfterMs'> {
  workers: number
  streamsPerWorker: number
  semaphore: SharedSemaphore
  bufferedSemaphore: SharedSemaphore | undefined
  rateLimiter: SharedRateLimiter | undefined
  workerStallTimeoutMs: number
  window: number
}

/** The default worker count: the machine's parallelism (at least 1). */
export function defaultWorkers(): number {
  const web = (globalThis as { navigator?: { hardwareConcurrency?: unknown } }).navigator?.hardwareConcurrency
  return Math.max(1, typeof web === 'number' && web > 0 ? web : availableParallelism())
}

export function resolveWorkers(value: unknown): number {
  return value === undefined ? defaultWorkers() : nonNegativeInteger('workers', value)
}

export function resolvePoolOptions(options: WorkerPoolOptions): ResolvedPoolOptions {
  if (typeof options !== 'object' || options === null) invalidOption('options', 'an object', options)
  const workers = positiveInteger('workers', options.workers ?? defaultWorkers())
  for (const name of ['fetch', 'onEvent'] as const) {
    if (options[name] !== undefined) {
      const expected = `undefined with \`workers\` > 0 (functions cannot cross threads: ${ALTERNATIVE[name]})`
      invalidOption(name, expected, options[name])
    }
  }
  if (options.retry?.random !== undefined) {
    invalidOption('retry.random', 'undefined with `workers` > 0 (functions cannot cross threads)', options.retry.random)
  }
  // The same checks and messages as the in-process client, once, here.
  const checked = resolveOptions({ ...options, telemetry: undefined, transform: undefined })
  const semaphore = shared('semaphore', options.semaphore)!
  const bufferedSemaphore = options.bufferedSemaphore === undefined
    ? undefined
    : shared('bufferedSemaphore', options.bufferedSemaphore)
  const rateLimiter = sharedLimiter(options.rateLimiter)
  checkUpstream(options.upstream, options.fetchModule)
  const { retry } = options
  return {
    workers,
    streamsPerWorker: positiveInteger('streamsPerWorker', options.streamsPerWorker ?? 256),
    semaphore,
    bufferedSemaphore,
    rateLimiter,
    client: {
      streamWeight: options.streamWeight,
      bufferedWeight: options.bufferedWeight,
      rateLimitCost: options.rateLimitCost,
      queueTimeoutMs: options.queueTimeoutMs,
      queueRetryAfterMs: options.queueRetryAfterMs,
      idleTimeoutMs: options.idleTimeoutMs,
      totalTimeoutMs: options.totalTimeoutMs,
      heartbeatMs: options.heartbeatMs,
      maxEventBytes: options.maxEventBytes,
      retry: retry === undefined ? undefined : { ...retry },
    },
    transform: options.transform === undefined ? undefined : transformUrl(options.transform),
    upstream: options.upstream,
    fetchModule: options.fetchModule === undefined ? undefined : moduleUrl('fetchModule', options.fetchModule),
    demo: options.demo === undefined ? undefined : { ...options.demo },
    queueTimeoutMs: checked.queueTimeoutMs,
    queueRetryAfterMs: checked.queueRetryAfterMs,
    workerStallTimeoutMs: durationMs('workerStallTimeoutMs', options.workerStallTimeoutMs ?? 10_000),
    window: positiveInteger('window', options.window ?? 65_536),
  }
}

/** `upstream` is `'demo'` or absent; a `fetchModule` is for a real upstream only. */
export function checkUpstream(upstream: unknown, fetchModule: unknown): void {
  if (upstream !== undefined && upstream !== 'demo') invalidOption('upstream', '`demo` or undefined', upstream)
  if (upstream === 'demo' && fetchModule !== undefined) {
    invalidOption('fetchModule', "undefined with `upstream: 'demo'` (the demo model is called in-process)", fetchModule)
  }
}

const ALTERNATIVE = {
  fetch: "use `fetchModule` (a module whose default export makes the fetch), or `upstream: 'demo'`",
  onEvent: 'use a `transform` module',
}

function shared(name: string, value: PermitSource | undefined): SharedSemaphore | undefined {
  if (value instanceof SharedSemaphore) return value
  invalidOption(name, 'a SharedSemaphore with `workers` > 0 (its handle crosses threads)', value)
}

function sharedLimiter(value: TokenSource | undefined): SharedRateLimiter | undefined {
  if (value === undefined || value instanceof SharedRateLimiter) return value
  invalidOption('rateLimiter', 'a SharedRateLimiter with `workers` > 0 (its handle crosses threads)', value)
}

/**
 * The worker pool: upstream calls run in worker threads (piscina underneath), the main thread only serves client
 * sockets. Every thread shares one SharedSemaphore and one SharedRateLimiter, metrics and lifecycle events are
 * recorded on the main thread, and `stream()`/`complete()` keep the in-process client's contract (see
 * ./pool-call.ts). Protocol and failure handling: ./pool-protocol.ts.
 *
 * piscina settings, and why:
 * - `atomics: 'disabled'`: with the default 'sync', a worker with no task parks in `Atomics.wait`, which freezes
 *   its event loop — its heartbeat would stop (the watchdog would kill it), a stream's drain after `[DONE]`, its
 *   keep-alive sockets and SHUTDOWN messages would wait for the next task (shared/research/concurrency.md §1:
 *   0 of 30 chunks delivered after a task returned with 'sync', 30 with 'async'/'disabled'). 'async' would also
 *   work but adds a pending `Atomics.waitAsync` per idle worker for no gain: the three modes measured within noise
 *   (36.8k/42.6k/38.8k tasks/s), and our tasks are long-lived calls, not tiny jobs.
 * - `concurrentTasksPerWorker = streamsPerWorker`: calls are I/O-bound; one task per call, pending for the whole
 *   call, so piscina balances by live calls.
 * - `minThreads = maxThreads = workers`: all workers up front and replaced when one dies (piscina does that for a
 *   worker that was ready); no idle shrinking under a live stream.
 * - No per-task `signal`: it would make the task take a whole worker and aborting it would kill the worker.
 * @module
 */
import type { Worker } from 'node:worker_threads'
import type { Emitter } from 'nanoevents'
import { Piscina } from 'piscina'
import { deferred, settledWithin } from '../abort.ts'
import { sharedNow } from '../clock.ts'
import type { StreamRunner } from '../gateway/runner.ts'
import type { StreamEvents } from '../telemetry/events.ts'
import { checkRequest, checkResume, resolveTelemetry } from '../upstream/client.ts'
import type { CallOptions, UpstreamRequest } from '../upstream/types.ts'
import { holdAlive } from '../keep-alive.ts'
import { durationMs } from '../validate.ts'
import { ChunkReaderHub } from './chunk-channel-reader-hub.ts'
import { errorFromWire, PoolClosedError } from './pool-errors.ts'
import { type CallHost, PoolCall } from './pool-call.ts'
import { type ResolvedPoolOptions, resolvePoolOptions, type WorkerPoolOptions } from './pool-options.ts'
import { type CallTask, DONE, EVENT, FAILED, HEAD, READY, type WorkerInit } from './pool-protocol.ts'
import { WorkerRegistry } from './pool-workers.ts'

export interface WorkerPool extends StreamRunner {
  /** Lifecycle events of every worker's calls, on the main thread: `pool.events.on('end', …)`. */
  readonly events: Emitter<StreamEvents>
  /** Calls in flight (until their `end`). */
  readonly active: number
  /** Resolves once every worker has loaded (the transform module included); rejects if one could not. */
  readonly ready: Promise<void>
  /** The worker threads (piscina's), e.g. to watch or terminate one. */
  readonly threads: readonly Worker[]
  /**
   * Waits for calls in flight up to `timeoutMs` (default 30 s), then ends the rest like a server shutdown (an SSE
   * error event `closed`, or a 503 rejection before the first byte), then terminates the workers. New calls are
   * refused from the start. Idempotent.
   */
  close(options?: { timeoutMs?: number }): Promise<void>
}

/** After the deadline, how long shut-down calls get to end on their own before they are cut. */
const CLOSE_GRACE_MS = 2_000

let nextKey = 0
const callIdPrefix = Math.random().toString(36).slice(2, 8)

/**
 * Creates a worker pool. Prefer `createStreamRunner({ workers, … })`, which returns the in-process client for
 * `workers: 0` and this pool otherwise.
 * @example
 * ```ts
 * const semaphore = new SharedSemaphore({ capacity: 64 })
 * const pool = createWorkerPool({ semaphore, workers: 2, transform: './redact.js', telemetry })
 * const response = await pool.stream({ url, headers, body }, { signal: request.signal })
 * await pool.close({ timeoutMs: 10_000 })
 * ```
 */
export function createWorkerPool(options: WorkerPoolOptions): WorkerPool {
  const settings = resolvePoolOptions(options)
  const { sink, events } = resolveTelemetry(options.telemetry)
  const hub = new ChunkReaderHub({ window: settings.window })
  const calls = new Map<number, PoolCall>()
  let active = 0
  let closing: Promise<void> | undefined
  let idle = deferred<void>()

  const ready = deferred<void>()
  const host: CallHost = {
    sink,
    started: ready.promise,
    queueTimeoutMs: settings.queueTimeoutMs,
    queueRetryAfterMs: settings.queueRetryAfterMs,
    ended: () => void active--,
    settled(call) {
      calls.delete(call.key)
      if (calls.size === 0) idle.resolve()
    },
  }

  const piscina = new Piscina({
    filename: WORKER_URL,
    minThreads: settings.workers,
    maxThreads: settings.workers,
    concurrentTasksPerWorker: settings.streamsPerWorker,
    atomics: 'disabled',
    idleTimeout: Number.POSITIVE_INFINITY,
    workerData: workerInit(settings),
    ...(WORKER_EXEC_ARGV ? { execArgv: WORKER_EXEC_ARGV } : {}),
  })

  let readyWorkers = 0
  const registry = new WorkerRegistry(piscina, hub, {
    semaphores: [settings.semaphore, settings.bufferedSemaphore],
    stallTimeoutMs: settings.workerStallTimeoutMs,
    busy: () => calls.size > 0,
    closing: () => closing !== undefined,
    onItems(link, items) {
      for (const item of items) {
        switch (item[0]) {
          case EVENT:
            calls.get(Number(item[1].id))?.onEvent(item[1], link)
            break
          case HEAD:
            calls.get(item[1])?.onHead(item[2], item[3], link)
            break
          case DONE:
            calls.get(item[1])?.onDone(item[2], link)
            break
          case READY:
            if (++readyWorkers === settings.workers) ready.resolve()
            break
          case FAILED:
            ready.reject(errorFromWire(item[1]))
            break
        }
      }
    },
  })
  // `ready` is also awaited by whoever wants it; this keeps an unobserved rejection from crashing the process.
  let isReady = false
  // piscina unrefs its workers, so on Node a script awaiting `ready` (or a call made before it) would exit with
  // "unsettled top-level await" while the workers start: hold the process until they are up (or failed).
  const releaseStartup = holdAlive()
  ready.promise.then(() => (isReady = true), noop).finally(releaseStartup)

  function start(kind: CallTask['kind'], request: UpstreamRequest, callOptions: CallOptions = {}): Promise<Response> {
    if (closing !== undefined) return Promise.reject(new PoolClosedError('The worker pool is closed'))
    try {
      checkRequest(request)
      checkResume(callOptions.resume)
    } catch (error) {
      return Promise.reject(error)
    }
    const key = ++nextKey
    const id = callOptions.id ?? `${callIdPrefix}-${key}`
    const reader = hub.open()
    const call = new PoolCall(host, key, id, kind, reader, callOptions)
    if (calls.size === 0) idle = deferred<void>()
    calls.set(key, call)
    active++
    const { url, method, headers, body } = request
    const { notAfter, resume } = budgetOf(callOptions.resume)
    const task: CallTask = { kind, key, channel: reader.handle, request: { url, method, headers, body }, notAfter }
    if (resume) task.resume = resume
    // A call made while the pool starts gets no deadline in the task: startup is not charged to its budget.
    if (!isReady) task.notAfter = undefined
    dispatch(call, task)
    return call.response
  }

  /** Runs `task`; if its worker dies before the upstream answered, re-sends it once (./pool-call.ts says when). */
  function dispatch(call: PoolCall, task: CallTask): void {
    piscina.run(task).catch((error: unknown) => {
      const resume = closing === undefined ? call.resumption() : undefined
      if (resume === undefined) return call.workerFailed(error)
      const key = ++nextKey
      const reader = hub.open()
      calls.delete(call.key)
      call.resend(key, reader, settings.queueTimeoutMs - resume.elapsedMs, error)
      calls.set(key, call)
      dispatch(call, { ...task, key, channel: reader.handle, ...budgetOf(resume) })
    })
  }

  /** A task's queue deadline, and the resume its worker needs, for a call `resume` says is under way (or not). */
  function budgetOf(resume: CallOptions['resume']): Pick<CallTask, 'notAfter' | 'resume'> {
    const now = sharedNow()
    const budgetStartedAt = now - (resume?.elapsedMs ?? 0)
    return {
      notAfter: budgetStartedAt + settings.queueTimeoutMs,
      ...(resume && { resume: { attempts: resume.attempts, budgetStartedAt } }),
    }
  }

  async function close({ timeoutMs = 30_000 }: { timeoutMs?: number } = {}): Promise<void> {
    durationMs('timeoutMs', timeoutMs, { allowZero: true })
    closing ??= (async () => {
      await settledWithin(idle.promise, calls.size === 0 ? 0 : timeoutMs)
      if (calls.size > 0) {
        const reason = new PoolClosedError('The worker pool closed before the call finished')
        for (const call of [...calls.values()]) call.close(reason)
        await settledWithin(idle.promise, CLOSE_GRACE_MS)
        for (const call of [...calls.values()]) call.workerFailed(reason)
      }
      registry.stop()
      releaseStartup()
      await piscina.destroy()
      hub.close(new PoolClosedError('The worker pool closed'))
    })()
    return closing
  }

  return {
    stream: (request, callOptions) => start('stream', request, callOptions),
    complete: (request, callOptions) => start('buffered', request, callOptions),
    close,
    events,
    ready: ready.promise,
    get active() {
      return active
    },
    get threads() {
      return piscina.threads
    },
  }
}

function workerInit(settings: ResolvedPoolOptions): WorkerInit {
  return {
    semaphore: settings.semaphore.handle,
    bufferedSemaphore: settings.bufferedSemaphore?.handle,
    rateLimiter: settings.rateLimiter?.handle,
    client: settings.client,
    transform: settings.transform,
    upstream: settings.upstream,
    fetchModule: settings.fetchModule,
    demo: settings.demo,
    queueTimeoutMs: settings.queueTimeoutMs,
    queueRetryAfterMs: settings.queueRetryAfterMs,
    heartbeatTickMs: Math.min(1_000, Math.max(10, settings.workerStallTimeoutMs / 4)),
    registerTsx: WORKER_EXEC_ARGV !== undefined,
  }
}

/**
 * The worker module next to this one: ./pool-worker.ts when running from sources (Bun, Deno, or Node under tsx),
 * ./pool-worker.js from dist/. Node 20 cannot run .ts, so a .ts worker there needs tsx's loader; piscina loads the
 * module with `import()` from its own worker.js, after `--import tsx` registered the loader.
 */
const FROM_SOURCES = import.meta.url.endsWith('.ts')
const WORKER_URL = new URL(`./pool-worker.${FROM_SOURCES ? 'ts' : 'js'}`, import.meta.url).href
const ON_NODE = process.versions.bun === undefined && process.versions.deno === undefined
const WORKER_EXEC_ARGV = FROM_SOURCES && ON_NODE ? ['--import', 'tsx'] : undefined

function noop(): void {}

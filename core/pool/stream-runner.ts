/**
 * The one factory: `createStreamRunner({ workers, … })` runs upstream calls in worker threads (`workers > 0`, the
 * worker pool) or in-process (`workers: 0`), with the same API and semantics, so switching is one option. The
 * in-process runner is the upstream client plus what the pool adds: the transform module (loaded with the same
 * `import()`), the demo upstream, `ready` and a graceful `close()`.
 * @module
 */
import type { Emitter } from 'nanoevents'
import { deferred, settledWithin } from '../abort.ts'
import { createDemoUpstream } from '../demo-upstream.ts'
import type { StreamEvents } from '../telemetry/events.ts'
import { createUpstreamClient, resolveTelemetry, type UpstreamClient } from '../upstream/client.ts'
import type { TransformFactory } from '../upstream/transform.ts'
import type { CallOptions, UpstreamRequest } from '../upstream/types.ts'
import { durationMs, invalidOption } from '../validate.ts'
import { PoolClosedError } from './pool-errors.ts'
import { checkUpstream, resolveWorkers, type StreamRunnerOptions, type WorkerPoolOptions } from './pool-options.ts'
import { loadFetch, loadTransform, moduleUrl, transformUrl } from './transform-loader.ts'
import { createWorkerPool, type WorkerPool } from './worker-pool.ts'

/** What `createStreamRunner()` returns either way: a gateway `StreamRunner` with events, `ready` and `close`. */
export type ManagedStreamRunner = Omit<WorkerPool, 'threads'>

/**
 * Creates a stream runner: a worker pool, or with `workers: 0` the in-process client.
 * @example
 * ```ts
 * const semaphore = new SharedSemaphore({ capacity: 64 })
 * const runner = createStreamRunner({ workers: 2, semaphore, transform: new URL('./redact.js', import.meta.url) })
 * const gateway = createGateway({ upstreamUrl, runner })
 * ```
 */
export function createStreamRunner(options: StreamRunnerOptions): ManagedStreamRunner {
  if (typeof options !== 'object' || options === null) invalidOption('options', 'an object', options)
  const workers = resolveWorkers(options.workers)
  if (workers > 0) return createWorkerPool({ ...(options as WorkerPoolOptions), workers })
  return createInProcessRunner(options)
}

const CLOSE_GRACE_MS = 2_000

function createInProcessRunner(options: StreamRunnerOptions): ManagedStreamRunner {
  const { sink, events } = resolveTelemetry(options.telemetry)
  checkUpstream(options.upstream, options.fetchModule)
  if (options.upstream !== 'demo' && options.fetch !== undefined && options.fetchModule !== undefined) {
    invalidOption('fetchModule', 'undefined when `fetch` is given', options.fetchModule)
  }
  const demoFetch = options.upstream === 'demo' ? { fetch: createDemoUpstream(options.demo) as typeof fetch } : {}
  const {
    transform: _transform,
    workers: _workers,
    streamsPerWorker: _streamsPerWorker,
    upstream: _upstream,
    fetchModule: _fetchModule,
    demo: _demo,
    workerStallTimeoutMs: _stall,
    window: _window,
    telemetry: _telemetry,
    ...clientOptions
  } = options
  const build = (transform?: TransformFactory, moduleFetch?: typeof fetch): UpstreamClient =>
    createUpstreamClient({
      ...clientOptions,
      ...demoFetch,
      ...(moduleFetch ? { fetch: moduleFetch } : {}),
      ...(transform ? { transform } : {}),
      telemetry: sink,
    })
  // Without modules to load the client exists at once (and validates the options now, like the pool does).
  const url = options.transform === undefined ? undefined : transformUrl(options.transform)
  const fetchUrl = options.fetchModule === undefined ? undefined : moduleUrl('fetchModule', options.fetchModule)
  let client: UpstreamClient | undefined = url === undefined && fetchUrl === undefined ? build() : undefined
  const loaded: Promise<UpstreamClient> = client !== undefined
    ? Promise.resolve(client)
    : Promise.all([
      url === undefined ? undefined : loadTransform(url),
      fetchUrl === undefined ? undefined : loadFetch(fetchUrl),
    ]).then(([transform, moduleFetch]) => (client = build(transform, moduleFetch)))
  const ready = loaded.then(noop)
  ready.catch(noop)

  const closer = new AbortController()
  let pending = 0
  let closing: Promise<void> | undefined
  let idle = deferred<void>()
  const activeCount = (): number => pending + (client?.active ?? 0)
  const offEnd = events.on('end', () => {
    if (activeCount() === 0) idle.resolve()
  })

  async function run(
    kind: 'stream' | 'complete',
    request: UpstreamRequest,
    callOptions: CallOptions = {},
  ): Promise<Response> {
    if (closing !== undefined) throw new PoolClosedError('The stream runner is closed')
    if (activeCount() === 0) idle = deferred<void>()
    pending++
    let ready: UpstreamClient
    try {
      ready = await loaded
    } finally {
      pending--
    }
    const shutdownSignal = callOptions.shutdownSignal
      ? AbortSignal.any([callOptions.shutdownSignal, closer.signal])
      : closer.signal
    return ready[kind](request, { ...callOptions, shutdownSignal })
  }

  return {
    stream: (request, callOptions) => run('stream', request, callOptions),
    complete: (request, callOptions) => run('complete', request, callOptions),
    events,
    ready,
    get active() {
      return activeCount()
    },
    close({ timeoutMs = 30_000 } = {}) {
      durationMs('timeoutMs', timeoutMs, { allowZero: true })
      closing ??= (async () => {
        await settledWithin(idle.promise, activeCount() === 0 ? 0 : timeoutMs)
        if (activeCount() > 0) {
          closer.abort(new PoolClosedError('The stream runner closed before the call finished'))
          await settledWithin(idle.promise, CLOSE_GRACE_MS)
        }
        offEnd()
      })()
      return closing
    },
  }
}

function noop(): void {}

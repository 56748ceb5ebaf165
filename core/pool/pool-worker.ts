/**
 * The worker thread of the pool: piscina's `filename`. Runs calls with the in-process upstream client and sends
 * their bytes over the chunk channel and their news over the control port; the protocol is described in
 * ./pool-protocol.ts. The module has no top-level `await` so that piscina's `require()`-then-`import()` probe
 * cannot evaluate it twice.
 * @module
 */
import { setImmediate, setInterval } from 'node:timers'
import { MessageChannel, parentPort, threadId, workerData } from 'node:worker_threads'
import { sharedNow } from '../clock.ts'
import { createDemoUpstream } from '../demo-upstream.ts'
import { SharedRateLimiter } from '../rate-limiter.ts'
import { SharedSemaphore } from '../semaphore.ts'
import { createUpstreamClient, type UpstreamClient } from '../upstream/client.ts'
import { QueueTimeoutError } from '../upstream/errors.ts'
import type { ChunkPort } from './chunk-channel-port.ts'
import { reasonToWire } from './chunk-channel-reason.ts'
import { ChunkWriterHub } from './chunk-channel-writer-hub.ts'
import type { ChunkWriter } from './chunk-channel-writer.ts'
import { ControlBatch, listenForControl } from './pool-control.ts'
import { errorFromWire } from './pool-errors.ts'
import { DONE, EVENT, FAILED, HEAD, POOL_TAG, READY, SHUTDOWN } from './pool-protocol.ts'
import type { CallTask, HelloMessage, WorkerInit } from './pool-protocol.ts'
import { loadFetch, loadTransform } from './transform-loader.ts'

const init = workerData as WorkerInit
const semaphore = SharedSemaphore.from(init.semaphore)
const bufferedSemaphore = init.bufferedSemaphore ? SharedSemaphore.from(init.bufferedSemaphore) : undefined
const rateLimiter = init.rateLimiter ? SharedRateLimiter.from(init.rateLimiter) : undefined

const { port1, port2 } = new MessageChannel()
const port = port1 as unknown as ChunkPort
const heartbeat = new Int32Array(new SharedArrayBuffer(4))
const hello: HelloMessage = {
  tag: POOL_TAG,
  threadId,
  owners: bufferedSemaphore ? [semaphore.owner, bufferedSemaphore.owner] : [semaphore.owner],
  port: port2,
  heartbeat: heartbeat.buffer as SharedArrayBuffer,
}
parentPort!.postMessage(hello, [port2])
// Unref'd: piscina keeps the worker alive; this only shows main that the event loop still turns.
setInterval(() => Atomics.add(heartbeat, 0, 1), init.heartbeatTickMs).unref()

const control = new ControlBatch(port)
const writers = new ChunkWriterHub(port)
const shutdowns = new Map<number, AbortController>()
listenForControl(port, (items) => {
  for (const item of items) {
    // Rebuilt as a SluiceError when it is one, so the stream's error event names it as in-process.
    if (item[0] === SHUTDOWN) shutdowns.get(item[1])?.abort(errorFromWire(item[2]))
  }
})

const clientReady: Promise<UpstreamClient> = (async () => {
  if (init.registerTsx && (init.transform !== undefined || init.fetchModule !== undefined)) await registerTsx()
  const transform = init.transform === undefined ? undefined : await loadTransform(init.transform)
  const fetchFromModule = init.fetchModule === undefined ? undefined : await loadFetch(init.fetchModule)
  const { client } = init
  return createUpstreamClient({
    semaphore,
    ...(bufferedSemaphore ? { bufferedSemaphore } : {}),
    ...(rateLimiter ? { rateLimiter } : {}),
    ...definedOnly(client),
    ...(transform ? { transform } : {}),
    ...(init.upstream === 'demo' ? { fetch: createDemoUpstream(init.demo) as typeof fetch } : {}),
    ...(fetchFromModule ? { fetch: fetchFromModule } : {}),
    telemetry: (event) => control.post([EVENT, event]),
  })
})()
clientReady.then(
  () => control.post([READY]),
  (error: unknown) => control.post([FAILED, reasonToWire(error)]),
)

/** piscina's handler: one call, settled when it is over in this worker. Never rejects. */
export default async function runCall(task: CallTask): Promise<void> {
  const { key } = task
  // First, so that a cancel sent while this call waits (for the client, for permits) reaches it.
  const writer = writers.open(task.channel)
  const shutdown = new AbortController()
  shutdowns.set(key, shutdown)
  let error: unknown
  try {
    if (task.notAfter !== undefined && sharedNow() >= task.notAfter) {
      // It waited in piscina's queue past its budget: main has given up on it; take no permit, send nothing.
      throw new QueueTimeoutError(init.queueTimeoutMs, init.queueRetryAfterMs, {
        message: `No worker started the call within the queue timeout of ${init.queueTimeoutMs} ms`,
      })
    }
    const client = await clientReady
    const { resume } = task
    const options = {
      signal: writer.signal,
      shutdownSignal: shutdown.signal,
      id: String(key),
      // Re-sent after another worker died under it: its attempts and queue time so far count here.
      ...(resume && {
        resume: { attempts: resume.attempts, elapsedMs: Math.max(0, sharedNow() - resume.budgetStartedAt) },
      }),
    }
    const response = task.kind === 'stream'
      ? await client.stream(task.request, options)
      : await client.complete(task.request, options)
    // At once, not with the turn's batch: main re-sends a call whose worker died before it saw HEAD (the upstream
    // had not answered, ./pool-call.ts). Batched, a crash later in this turn (another stream's transform calling
    // process.exit()) would lose a HEAD whose answer the upstream had already given, and the call would be sent
    // twice. Once per call: the cost is one postMessage.
    control.postNow([HEAD, key, response.status, [...response.headers]])
    await pump(response.body, writer)
  } catch (rejected) {
    // Rejected before any byte (the same errors as in-process), or the client left.
    error = rejected
    writer.error(rejected)
  } finally {
    shutdowns.delete(key)
  }
  // DONE must trail the call's last chunk frames on the port: main forgets the call at DONE, and a pool closing
  // then terminates the worker, which would drop frames still waiting in this turn's chunk batch (measured:
  // the stream's final error event lost). Each batch flushes on setImmediate, so the next turn is after them.
  await nextTurn()
  control.post([DONE, key, error === undefined ? undefined : reasonToWire(error)])
  // And DONE leaves before piscina posts the task's result (a worker dying right after cannot lose it).
  await nextTurn()
}

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

/** Body → chunk writer, reading the body only when the writer has credit (each write resolves on credit). */
async function pump(body: ReadableStream<Uint8Array> | null, writer: ChunkWriter): Promise<void> {
  if (body === null) {
    await writer.close().catch(noop)
    return
  }
  const reader = body.getReader()
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      await writer.write(value)
    }
    await writer.close()
  } catch (error) {
    // The consumer left (the writer's signal already aborted the call) or the body failed.
    reader.cancel(error).catch(noop)
    writer.error(error)
  }
}

/**
 * Node 20 running from .ts sources (tests, benchmarks): `--import tsx` in the worker's execArgv installs tsx's
 * require hook, which is how piscina's `require()` loads this module, but its ESM hooks do not reach a worker's
 * `import()` on Node 20.20.2 + tsx 4.23 (measured: ERR_UNKNOWN_FILE_EXTENSION for a .ts transform). Registering
 * them from inside the worker works (test/scenarios/chunk-channel-fixtures.ts does the same). Never from dist/.
 */
async function registerTsx(): Promise<void> {
  const api = 'tsx/esm/api'
  const { register } = (await import(api)) as { register: () => unknown }
  register()
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>
}

function noop(): void {}

// Worker plumbing shared by the semaphore scenarios. node:worker_threads exists on node, bun and deno; bun and
// deno run a .ts worker natively, while node 20 needs tsx registered inside the worker (`execArgv: ['--import',
// 'tsx']` is not honoured for workers there: ERR_UNKNOWN_FILE_EXTENSION), so node gets a tiny eval bootstrap.
import { Worker } from 'node:worker_threads'

const runtimeGlobals = globalThis as { Bun?: unknown; Deno?: unknown }

export function runtimeName(): 'node' | 'bun' | 'deno' {
  return runtimeGlobals.Bun !== undefined ? 'bun' : runtimeGlobals.Deno !== undefined ? 'deno' : 'node'
}

/** Starts `test/scenarios/workers/<name>.ts` on every runtime. */
export function spawnWorker(name: string, workerData?: unknown): Worker {
  const url = new URL(`./workers/${name}.ts`, import.meta.url)
  if (runtimeName() !== 'node') return new Worker(url, { workerData })
  const tsx = import.meta.resolve('tsx/esm/api')
  const load = `import(${JSON.stringify(url.href)})`
  const bootstrap = `import(${JSON.stringify(tsx)}).then(({ register }) => { register(); return ${load} })`
  return new Worker(bootstrap, { eval: true, workerData })
}

/** Resolves with the first message that satisfies `accept`; rejects if the worker fails or exits first. */
export function nextMessage<T>(worker: Worker, accept: (message: T) => boolean = () => true): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onMessage = (message: T): void => {
      if (!accept(message)) return
      cleanup()
      resolve(message)
    }
    const onError = (error: unknown): void => {
      cleanup()
      reject(error instanceof Error ? error : new Error(String(error)))
    }
    const onExit = (code: number): void => {
      cleanup()
      reject(new Error(`worker exited (${code}) before the expected message`))
    }
    const cleanup = (): void => {
      worker.off('message', onMessage)
      worker.off('error', onError)
      worker.off('exit', onExit)
    }
    worker.on('message', onMessage)
    worker.on('error', onError)
    worker.on('exit', onExit)
  })
}

/** Resolves once the worker has exited (after terminate(), say). */
export function exited(worker: Worker): Promise<number> {
  return new Promise((resolve) => worker.once('exit', resolve))
}

/** mulberry32: a small seeded PRNG, so a failing run can be replayed with its seed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

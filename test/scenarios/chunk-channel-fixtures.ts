// Shared by the chunk-channel scenarios, their worker and the benchmark: seeded chunk generation (both threads
// regenerate the same bytes from the seed, so nothing big crosses just to be compared) and worker spawning that
// works on node (through tsx), bun and deno.
import { Worker } from 'node:worker_threads'

/** Int32 slot of the scenarios' shared buffer: the credit producer's `writer.sentBytes`, stored after every write. */
export const kSentBytes = 0

/** mulberry32: a tiny seeded PRNG, so every run and every thread sees the same "random" sizes and bytes. */
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

/** `count` chunks of 1…maxSize bytes with seeded sizes and contents. */
export function* seededChunks(seed: number, count: number, maxSize: number): Generator<Uint8Array> {
  const random = seededRandom(seed)
  for (let i = 0; i < count; i++) {
    const chunk = new Uint8Array(1 + Math.floor(random() * maxSize))
    for (let j = 0; j < chunk.length; j++) chunk[j] = (random() * 256) | 0
    yield chunk
  }
}

/**
 * Spawns a worker on a .ts file. Bun and Deno run TypeScript; Node 20 needs tsx's loader (no type stripping).
 * `execArgv: ['--import', 'tsx']` does not reach the worker's entry module on Node 20.20.2 + tsx 4.23
 * (measured: ERR_UNKNOWN_FILE_EXTENSION), so a two-line eval bootstrap registers tsx first, then imports it.
 */
export function spawnTsWorker(url: URL): Worker {
  const g = globalThis as { Bun?: unknown; Deno?: unknown }
  if (g.Bun !== undefined || g.Deno !== undefined) return new Worker(url)
  const tsxApi = import.meta.resolve('tsx/esm/api')
  const entry = JSON.stringify(url.href)
  const bootstrap = `import(${JSON.stringify(tsxApi)}).then(({ register }) => { register(); return import(${entry}) })`
  return new Worker(bootstrap, { eval: true })
}

/** Which runtime this is, for verdicts. */
export function runtimeName(): string {
  const g = globalThis as { Bun?: unknown; Deno?: unknown }
  return g.Bun !== undefined ? 'bun' : g.Deno !== undefined ? 'deno' : 'node'
}

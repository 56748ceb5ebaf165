// Shared by the rate-limiter scenarios and their worker: one thread's loop of acquire() calls, recording each
// admission, and worker spawning that works on node (through tsx), bun and deno.
import { Worker } from 'node:worker_threads'
import { sharedNow } from '../../core/clock.ts'
import { SharedRateLimiter } from '../../core/rate-limiter.ts'
import type { SharedRateLimiterHandle } from '../../core/rate-limiter.ts'

/** One admitted acquire(n), times on the shared clock (epoch ms). */
export interface Admission {
  thread: number
  n: number
  /** Just before acquire() was called. */
  calledAt: number
  /** The clock reading the limiter admitted on: the instant of its successful compare-and-swap. */
  decidedAt: number
  /** When the awaiting code resumed: decidedAt plus promise resolution and any preemption in between. */
  observedAt: number
}

/**
 * Calls `acquire(n)` back to back (one outstanding call, n = 1…maxN from a seeded PRNG) until `stopAt`.
 * The limiter is attached with the real shared clock, wrapped to remember its last reading. The limiter reads no
 * clock after its successful admission CAS, so after `await acquire()` the last reading is the instant the
 * admission was decided on. Only valid with one acquire in flight per thread, as here.
 */
export async function takeUntil(
  handle: SharedRateLimiterHandle,
  { thread, stopAt, maxN, seed }: { thread: number; stopAt: number; maxN: number; seed: number },
): Promise<Admission[]> {
  let lastReading = 0
  const limiter = SharedRateLimiter.from(handle, { now: () => (lastReading = sharedNow()) })
  const random = seededRandom(seed)
  const admissions: Admission[] = []
  while (sharedNow() < stopAt) {
    const n = 1 + Math.floor(random() * maxN)
    const calledAt = sharedNow()
    await limiter.acquire(n)
    admissions.push({ thread, n, calledAt, decidedAt: lastReading, observedAt: sharedNow() })
  }
  return admissions
}

/** mulberry32: a tiny seeded PRNG, so every run asks for the same weights. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/**
 * Spawns a worker on a .ts file. Bun and Deno run TypeScript; Node 20 needs tsx's loader, and
 * `execArgv: ['--import', 'tsx']` does not reach a worker's entry module on Node 20.20.2 + tsx 4.23 (measured:
 * "Unknown file extension .ts"), so a one-line eval bootstrap registers tsx, then imports the file.
 */
export function spawnTsWorker(url: URL, workerData?: unknown): Worker {
  const g = globalThis as { Bun?: unknown; Deno?: unknown }
  if (g.Bun !== undefined || g.Deno !== undefined) return new Worker(url, { workerData })
  const tsxApi = import.meta.resolve('tsx/esm/api')
  const entry = JSON.stringify(url.href)
  const bootstrap = `import(${JSON.stringify(tsxApi)}).then(({ register }) => { register(); return import(${entry}) })`
  return new Worker(bootstrap, { eval: true, workerData })
}

/** Which runtime this is, for verdicts. */
export function runtimeName(): string {
  const g = globalThis as { Bun?: unknown; Deno?: unknown }
  return g.Bun !== undefined ? 'bun' : g.Deno !== undefined ? 'deno' : 'node'
}

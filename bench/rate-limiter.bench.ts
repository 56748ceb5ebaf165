/**
 * SharedRateLimiter benchmark: what one limiter call costs, alone and with threads contending for the same word.
 *
 *   node --import tsx bench/rate-limiter.bench.ts      (also: bun bench/…, deno run -A bench/…)
 *
 * 1. Single thread, calls/s (tinybench): tryAcquire() admitted (two compare-and-swaps) and refused (loads only),
 *    acquire() admitted at once (plus a promise), against the same GCRA step on a plain number in one thread
 *    (what sharing across threads costs: Atomics on a BigInt64Array and BigInt conversions).
 * 2. Contention: 1, 2 and 4 threads calling tryAcquire() on one limiter in a tight loop for 500 ms: total calls/s.
 *    On this 2-core machine 4 threads also contend for the cores, not only for the word.
 * The limiter is configured never to run out (a burst of 10^9) so every admitted call takes the same path; the
 * refused case uses an emptied 1-per-hour limiter. Each case is checked (admitted or refused) before it is timed.
 * Figures are indicative: one machine, two shared cores (see bench/README.md).
 */
import process from 'node:process'
import { fileURLToPath } from 'node:url'
import { Bench } from 'tinybench'
import { SharedRateLimiter } from '../core/rate-limiter.ts'
import { runtimeName, spawnTsWorker } from '../test/scenarios/rate-limiter-taker.ts'

const kStarted = 0
const UNLIMITED = { rate: 1e9, per: 1e6 } // emission interval 1 µs, burst 10^9: never runs out during a bench
const round = (value: number, digits = 0): number => Number(value.toFixed(digits))

/** The same GCRA step as core/_gcra-word.ts on a plain number: the single-thread floor. */
function localGcra(rate: number, perMs: number): () => boolean {
  const intervalUs = Math.ceil((perMs * 1000) / rate)
  const toleranceUs = rate * intervalUs
  const epoch = performance.now()
  let tat = 0
  return () => {
    const now = Math.floor((performance.now() - epoch) * 1000)
    const end = Math.max(tat, now) + intervalUs
    if (end - toleranceUs > now) return false
    tat = end
    return true
  }
}

function check(condition: boolean, what: string): void {
  if (!condition) throw new Error(`bench precondition failed: ${what}`)
}

async function singleThread(): Promise<void> {
  const admitting = new SharedRateLimiter(UNLIMITED)
  const refusing = new SharedRateLimiter({ rate: 1, per: 3_600_000 })
  const local = localGcra(UNLIMITED.rate, UNLIMITED.per)
  check(admitting.tryAcquire() && refusing.tryAcquire() && !refusing.tryAcquire() && local(), 'admit/refuse paths')
  const bench = new Bench({ name: 'rate limiter, one thread', time: 1000, warmupTime: 200 })
  bench
    .add('tryAcquire() admitted', () => void admitting.tryAcquire())
    .add('tryAcquire() refused', () => void refusing.tryAcquire())
    .add('await acquire() admitted at once', async () => await admitting.acquire())
    .add('same GCRA on a plain number (baseline)', () => void local())
  await bench.run()
  console.table(
    bench.tasks.map((task) => {
      const result = task.result
      if (result?.state !== 'completed') throw new Error(`${task.name}: ${result?.state ?? 'missing'}`)
      const nsPerCall = result.latency.mean * 1e6
      return { case: task.name, 'calls/s': round(1e9 / nsPerCall), 'ns/call': round(nsPerCall) }
    }),
  )
}

async function contention(threads: number, durationMs: number): Promise<{ calls: number; admitted: number }> {
  const limiter = new SharedRateLimiter(UNLIMITED)
  const start = new Int32Array(new SharedArrayBuffer(4))
  const workers = Array.from({ length: threads }, () =>
    spawnTsWorker(new URL('../test/scenarios/workers/rate-limiter-bench.ts', import.meta.url)),
  )
  try {
    const results = workers.map((worker) => {
      let ready!: () => void
      const isReady = new Promise<void>((resolve) => (ready = resolve))
      const done = new Promise<{ calls: number; admitted: number }>((resolve, reject) => {
        worker.on('message', (message: { ready?: true; calls: number; admitted: number }) => {
          if (message.ready) ready()
          else resolve(message)
        })
        worker.once('error', reject)
      })
      worker.postMessage({ handle: limiter.handle, start, durationMs })
      return { isReady, done }
    })
    await Promise.all(results.map((result) => result.isReady))
    Atomics.store(start, kStarted, 1)
    Atomics.notify(start, kStarted)
    const counts = await Promise.all(results.map((result) => result.done))
    const total = counts.reduce((sum, c) => ({ calls: sum.calls + c.calls, admitted: sum.admitted + c.admitted }))
    check(total.admitted === total.calls, 'an unlimited limiter admits every call')
    return total
  } finally {
    await Promise.all(workers.map((worker) => worker.terminate()))
  }
}

/** Runs both sections and prints their tables. */
export async function run(): Promise<void> {
  console.log(`SharedRateLimiter on ${runtimeName()} (indicative; see bench/README.md)`)
  await singleThread()
  const durationMs = 500
  const rows = []
  for (const threads of [1, 2, 4]) {
    const { calls } = await contention(threads, durationMs)
    rows.push({ threads, 'tryAcquire() calls/s, all threads': round(calls / (durationMs / 1000)) })
  }
  console.table(rows)
}

const isEntry = process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]
const isMain = (import.meta as { main?: boolean }).main ?? isEntry
if (isMain) await run()

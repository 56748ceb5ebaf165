// One SharedRateLimiter (50 per 500 ms), four threads (main + 3 workers) taking weighted tokens back to back for
// 2 s, all started at once from a shared start word. Every thread records its admissions on the shared clock;
// the verdict replays them all through an aiolimiter bucket (exact leaky-bucket check over every window) and
// measures the initial burst and the throughput.
import { sharedNow } from '../../core/clock.ts'
import { SharedRateLimiter } from '../../core/rate-limiter.ts'
import { worstOverflow } from '../_leaky-bucket-model.ts'
import type { Admission } from './rate-limiter-taker.ts'
import { runtimeName, spawnTsWorker, takeUntil } from './rate-limiter-taker.ts'
import { runMain } from './_verdict.ts'

const RATE = 50
const PER_MS = 500
const DURATION_MS = 2000
const WORKERS = 3
const MAX_N = 3
const kStarted = 0

await runMain(async () => {
  const limiter = new SharedRateLimiter({ rate: RATE, per: PER_MS })
  const start = new Int32Array(new SharedArrayBuffer(4))
  const stopAt = new Float64Array(new SharedArrayBuffer(8))
  const workers = Array.from({ length: WORKERS }, () =>
    spawnTsWorker(new URL('./workers/rate-limiter-taker.ts', import.meta.url)),
  )
  try {
    const outcomes = workers.map((worker, index) => {
      let ready!: () => void
      const isReady = new Promise<void>((resolve) => (ready = resolve))
      const done = new Promise<Admission[]>((resolve, reject) => {
        worker.on('message', (message: { ready?: true; admissions?: Admission[]; error?: string }) => {
          if (message.ready) ready()
          else if (message.admissions) resolve(message.admissions)
          else reject(new Error(`worker ${index + 1}: ${message.error}`))
        })
        worker.once('error', reject)
        worker.once('exit', (code) => reject(new Error(`worker ${index + 1} exited (${code}) before reporting`)))
      })
      // The handle crosses by postMessage, exactly as an application would send it.
      worker.postMessage({ handle: limiter.handle, start, stopAt, thread: index + 1, maxN: MAX_N })
      return { isReady, done }
    })
    await Promise.all(outcomes.map((outcome) => outcome.isReady))

    // Written before the start word is stored: a worker that sees start = 1 (seq-cst) also sees stopAt.
    const startAt = sharedNow()
    stopAt[0] = startAt + DURATION_MS
    Atomics.store(start, kStarted, 1)
    Atomics.notify(start, kStarted)
    const mine = takeUntil(limiter.handle, { thread: 0, stopAt: startAt + DURATION_MS, maxN: MAX_N, seed: 0 })
    const all = (await Promise.all([mine, ...outcomes.map((outcome) => outcome.done)])).flat()

    const decided = all.map(({ decidedAt, n }) => ({ at: decidedAt, n }))
    // Windows start at the first admission, not at startAt: a thread descheduled while waking from the start
    // word (2 shared cores) delays the first call, which says nothing about the limiter.
    const firstAt = Math.min(...all.map((a) => a.decidedAt))
    const tokensWithin = (fromMs: number, toMs: number): number =>
      all.filter((a) => a.decidedAt >= firstAt + fromMs && a.decidedAt <= firstAt + toMs).reduce((s, a) => s + a.n, 0)
    return {
      runtime: runtimeName(),
      rate: RATE,
      perMs: PER_MS,
      durationMs: DURATION_MS,
      // Exact leaky-bucket check on the limiter's own admission instants (tokens; ≤ 0 means it always fit).
      decidedOverflow: worstOverflow(decided, RATE, PER_MS),
      // The same on the instants the awaiting code resumed: includes promise resolution and OS preemption.
      observedOverflow: worstOverflow(all.map(({ observedAt, n }) => ({ at: observedAt, n })), RATE, PER_MS),
      // The naive "≤ rate per any `per` window" count, for the record: a leaky bucket allows up to 2·rate.
      maxTokensInAnyPerWindow: maxInWindow(decided, PER_MS),
      burstTokens: tokensWithin(0, 100),
      tokensInDuration: tokensWithin(0, DURATION_MS),
      idealTokensInDuration: RATE + (DURATION_MS * RATE) / PER_MS,
      threadsAdmitted: new Set(all.map((a) => a.thread)).size,
      threads: WORKERS + 1,
      calls: all.length,
      earlyAdmissions: all.filter((a) => a.decidedAt < a.calledAt).length,
      firstAdmissionAfterStartMs: firstAt - startAt,
    }
  } finally {
    await Promise.all(workers.map((worker) => worker.terminate()))
  }
})

function maxInWindow(admissions: ReadonlyArray<{ at: number; n: number }>, windowMs: number): number {
  const sorted = [...admissions].sort((a, b) => a.at - b.at)
  let best = 0
  let sum = 0
  let tail = 0
  for (const admission of sorted) {
    sum += admission.n
    while (sorted[tail]!.at < admission.at - windowMs) sum -= sorted[tail++]!.n
    best = Math.max(best, sum)
  }
  return best
}

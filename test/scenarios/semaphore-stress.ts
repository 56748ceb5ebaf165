// Stress: 4 workers + the main thread hammer one SharedSemaphore (capacity 5, weights 1–3, 4 loops per worker,
// tryAcquire, timeouts and aborts mixed in) for a bounded number of operations. Verdict: the shared in-use
// weight never exceeded the capacity, every acquire settled (all threads finished), and the pool is whole
// and the queue empty at the end.
import { SharedSemaphore } from '../../core/semaphore.ts'
import { hammer, kMaxInUse, kProgress, kViolations, SHARED_WORDS } from './semaphore-hammer.ts'
import type { HammerJob, HammerResult } from './semaphore-hammer.ts'
import { exited, nextMessage, runtimeName, spawnWorker } from './semaphore-spawn.ts'
import { runMain } from './_verdict.ts'

const CAPACITY = 5
const WORKERS = 4
const LOOPS = 4
const OPS_PER_LOOP = 1_000
const MAIN_LOOPS = 2
const WATCHDOG_MS = 40_000

await runMain(async () => {
  const seed = Number(process.argv[2] ?? Date.now() % 1_000_000)
  const sem = new SharedSemaphore({ capacity: CAPACITY })
  const shared = new Int32Array(new SharedArrayBuffer(SHARED_WORDS * 4))
  const job = (index: number, loops: number): HammerJob => ({
    handle: sem.handle,
    shared,
    seed: seed + index,
    loops,
    ops: OPS_PER_LOOP,
    maxWeight: 3,
  })
  const workers = Array.from({ length: WORKERS }, () => spawnWorker('semaphore-hammer'))
  // Listen from the start: a worker that already exited never emits 'exit' again.
  const gone = workers.map(exited)
  let watchdog: ReturnType<typeof setTimeout> | undefined
  try {
    const results = workers.map((worker, index) => {
      const done = nextMessage<{ result?: HammerResult; error?: string }>(worker, (m) => 'result' in m || 'error' in m)
      worker.postMessage(job(index + 1, LOOPS))
      return done
    })
    const stuck = new Promise<'stuck'>((resolve) => (watchdog = setTimeout(() => resolve('stuck'), WATCHDOG_MS)))
    type Outcome = { result?: HammerResult; error?: string }
    const mainDone = hammer(job(0, MAIN_LOOPS)).then((result): Outcome => ({ result }))
    const all = Promise.all([mainDone, ...results])
    const outcome = await Promise.race([all, stuck])
    if (outcome === 'stuck') {
      const progress = Atomics.load(shared, kProgress)
      return { runtime: runtimeName(), seed, stuck: true, progress, waiting: sem.waiting }
    }
    const errors = outcome.flatMap((o) => (o.error ? [o.error] : []))
    const totals = outcome.map((o) => o.result!)
    return {
      runtime: runtimeName(),
      seed,
      stuck: false,
      errors,
      operations: Atomics.load(shared, kProgress),
      expectedOperations: (WORKERS * LOOPS + MAIN_LOOPS) * OPS_PER_LOOP,
      acquired: totals.reduce((sum, t) => sum + t.acquired, 0),
      timeouts: totals.reduce((sum, t) => sum + t.timeouts, 0),
      aborts: totals.reduce((sum, t) => sum + t.aborts, 0),
      tryMisses: totals.reduce((sum, t) => sum + t.tryMisses, 0),
      threadsThatAcquired: totals.filter((t) => t.acquired > 0).length,
      maxInUse: Atomics.load(shared, kMaxInUse),
      violations: Atomics.load(shared, kViolations),
      capacity: CAPACITY,
      available: sem.available,
      waiting: sem.waiting,
    }
  } finally {
    clearTimeout(watchdog)
    for (const worker of workers) void worker.terminate()
    await Promise.all(gone)
  }
})

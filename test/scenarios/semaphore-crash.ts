// Crash recovery under load: a survivor worker and the main thread hammer one SharedSemaphore with a fixed
// number of operations while mortal workers hammer it without end; each mortal is terminated at a random
// moment (after the shared progress counter passes a random mark) and reclaimed on 'exit', and a new mortal
// takes its place. Terminations land anywhere, also inside a critical section or holding the section lock.
// Verdict: every fixed-count thread finished (nobody stuck behind a dead thread), and once the last mortal is
// reclaimed the pool is whole and the queue empty: every reclaim was exact. (No in-use check here: a killed
// thread never takes its weight off the shared in-use word; semaphore-stress.ts checks over-granting.)
//
// Deno 2.9.6: `worker.terminate()` emits 'exit' at once (~0.05 ms), but the worker keeps running JS until it
// next returns to its event loop: measured, a worker in a microtask-only loop ran for seconds after 'exit'.
// reclaim() is for threads that have stopped, so on Deno the parent first waits until the killed worker's own
// operation counter stood still for 20 ms (a worker that reached its event loop is gone; one still running
// microtasks moves the counter every few µs). Node and Bun emit 'exit' after the thread stopped.
import { SharedSemaphore } from '../../core/semaphore.ts'
import { hammer, kOwnProgressBase, kProgress, SHARED_WORDS } from './semaphore-hammer.ts'
import type { HammerJob, HammerResult } from './semaphore-hammer.ts'
import { exited, nextMessage, runtimeName, seededRandom, spawnWorker } from './semaphore-spawn.ts'
import { runMain } from './_verdict.ts'

const CAPACITY = 6
const KILLS = 12
const WATCHDOG_MS = 40_000
const STILL_MS = 20

/** Resolves once `shared[index]` has not changed for STILL_MS. */
async function stoodStill(shared: Int32Array, index: number): Promise<void> {
  for (let seen = Atomics.load(shared, index); ; ) {
    await new Promise((resolve) => setTimeout(resolve, STILL_MS))
    const now = Atomics.load(shared, index)
    if (now === seen) return
    seen = now
  }
}

await runMain(async () => {
  const seed = Number(process.argv[2] ?? Date.now() % 1_000_000)
  const random = seededRandom(seed)
  const sem = new SharedSemaphore({ capacity: CAPACITY })
  const shared = new Int32Array(new SharedArrayBuffer((SHARED_WORDS + KILLS) * 4))
  const job = (index: number, ops: number): HammerJob => ({
    handle: sem.handle,
    shared,
    seed: seed + index,
    loops: 4,
    ops,
    maxWeight: 3,
  })
  const survivor = spawnWorker('semaphore-hammer')
  const survivorGone = exited(survivor)
  type Outcome = { result?: HammerResult; error?: string }
  const survivorDone = nextMessage<Outcome>(survivor, (m) => 'result' in m || 'error' in m)
  survivor.postMessage(job(1, 1_500))
  const mainDone = hammer({ ...job(2, 600), loops: 2 })

  let watchdog: ReturnType<typeof setTimeout> | undefined
  const stuck = new Promise<never>((_, reject) => {
    watchdog = setTimeout(() => reject(new Error(`stuck: progress ${Atomics.load(shared, kProgress)}`)), WATCHDOG_MS)
  })
  const mortals = async () => {
    const reclaimed: number[] = []
    let diedLocked = 0
    for (let kill = 0; kill < KILLS; kill++) {
      const mortal = spawnWorker('semaphore-hammer')
      const attached = nextMessage<{ owner: number }>(mortal, (m) => 'owner' in m)
      const ownProgress = kOwnProgressBase + kill
      mortal.postMessage({ ...job(100 + kill, Number.POSITIVE_INFINITY), ownProgress })
      const { owner } = await attached
      // Let it run for a random number of operations (all threads together), then kill it wherever it is.
      // Every hammering thread adds to kProgress and notifies it after each operation; wait for it to move
      // from the value read (a timeout only re-reads: a notify between the read and the wait is not missed).
      const mark = Atomics.load(shared, kProgress) + 20 + Math.floor(random() * 200)
      for (let seen = Atomics.load(shared, kProgress); seen < mark; seen = Atomics.load(shared, kProgress)) {
        const wait = Atomics.waitAsync(shared, kProgress, seen, 1_000)
        if (wait.async) await wait.value
      }
      const gone = exited(mortal)
      void mortal.terminate()
      await gone
      if (runtimeName() === 'deno') await stoodStill(shared, ownProgress)
      // Diagnostics only: was the mortal inside a section when it died? (kState word, mark bits 21–30.)
      const state = Atomics.load(new Int32Array(sem.handle.buffer), 0)
      if (((state >>> 21) & 0x3ff) - 1 === owner) diedLocked++
      reclaimed.push(sem.reclaim(owner))
    }
    return { reclaimed, diedLocked }
  }
  try {
    const [mortalOutcome, survivorOutcome, mainOutcome] = await Promise.race([
      Promise.all([mortals(), survivorDone, mainDone]),
      stuck,
    ])
    return {
      runtime: runtimeName(),
      seed,
      kills: mortalOutcome.reclaimed.length,
      reclaimed: mortalOutcome.reclaimed,
      diedLocked: mortalOutcome.diedLocked,
      survivorError: survivorOutcome.error ?? null,
      survivorAcquired: survivorOutcome.result?.acquired ?? 0,
      mainAcquired: mainOutcome.acquired,
      capacity: CAPACITY,
      available: sem.available,
      waiting: sem.waiting,
    }
  } finally {
    clearTimeout(watchdog)
    void survivor.terminate()
    await survivorGone
  }
})

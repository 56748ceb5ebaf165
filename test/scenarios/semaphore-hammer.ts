// The load of the semaphore stress and crash scenarios, run by workers and by the main thread alike: random
// weighted acquire/release with tryAcquire, timeouts and aborts mixed in. Every thread adds what it holds to one
// shared in-use word right after acquiring and takes it off right before releasing, so in-use > capacity at any
// moment would mean the semaphore over-granted.
import { SharedSemaphore } from '../../core/semaphore.ts'
import type { Permit, SemaphoreHandle } from '../../core/semaphore.ts'
import { seededRandom } from './semaphore-spawn.ts'

/** Words of the `shared` Int32Array every hammering thread gets. */
export const kInUse = 0
export const kMaxInUse = 1
export const kViolations = 2
/** Completed operations, all threads together: a crash scenario waits on it before it kills a thread. */
export const kProgress = 3
/** Then one word per thread that asks for it (`ownProgress`): that thread's completed operations. */
export const kOwnProgressBase = 4
export const SHARED_WORDS = 4

export interface HammerJob {
  handle: SemaphoreHandle
  shared: Int32Array
  seed: number
  loops: number
  /** Operations per loop; Infinity hammers until the thread is terminated. */
  ops: number
  maxWeight: number
  /** Index of a word of `shared` that counts this thread's own operations. */
  ownProgress?: number
}

export interface HammerResult {
  owner: number
  acquired: number
  tryMisses: number
  timeouts: number
  aborts: number
}

export async function hammer(job: HammerJob, onAttached?: (owner: number) => void): Promise<HammerResult> {
  const sem = SharedSemaphore.from(job.handle)
  onAttached?.(sem.owner)
  const random = seededRandom(job.seed)
  const result: HammerResult = { owner: sem.owner, acquired: 0, tryMisses: 0, timeouts: 0, aborts: 0 }
  const { shared } = job
  const loop = async (): Promise<void> => {
    for (let op = 0; op < job.ops; op++) {
      const weight = 1 + Math.floor(random() * job.maxWeight)
      const kind = random()
      let permit: Permit | null | undefined
      if (kind < 0.15) {
        permit = sem.tryAcquire(weight)
        if (!permit) result.tryMisses++
      } else if (kind < 0.25) {
        permit = await sem.acquire(weight, { timeoutMs: 1 + random() * 4 }).catch((error: { code?: string }) => {
          if (error.code !== 'ERR_TIMEOUT') throw error
          result.timeouts++
          return undefined
        })
      } else if (kind < 0.32) {
        const controller = new AbortController()
        const reason = { aborted: op }
        setTimeout(() => controller.abort(reason), 0)
        permit = await sem.acquire(weight, { signal: controller.signal }).catch((error: unknown) => {
          if (error !== reason) throw error
          result.aborts++
          return undefined
        })
      } else {
        permit = await sem.acquire(weight)
      }
      if (permit) {
        result.acquired++
        const inUse = Atomics.add(shared, kInUse, weight) + weight
        if (inUse > sem.capacity) Atomics.add(shared, kViolations, 1)
        for (let seen = Atomics.load(shared, kMaxInUse); inUse > seen; ) {
          const previous = Atomics.compareExchange(shared, kMaxInUse, seen, inUse)
          if (previous === seen) break
          seen = previous
        }
        // Hold across a microtask, sometimes across a macrotask, so that holds overlap between threads.
        if (random() < 0.1) await new Promise((resolve) => setTimeout(resolve, 0))
        else await Promise.resolve()
        Atomics.sub(shared, kInUse, weight)
        permit.release()
      }
      if (job.ownProgress !== undefined) Atomics.add(shared, job.ownProgress, 1)
      Atomics.add(shared, kProgress, 1)
      Atomics.notify(shared, kProgress)
    }
  }
  await Promise.all(Array.from({ length: job.loops }, loop))
  return result
}

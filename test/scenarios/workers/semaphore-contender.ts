// Worker side of the contended semaphore benchmark (bench/semaphore.bench.ts): `loops` async loops acquire one
// permit, check that no more than `capacity` are held, and release it at once. With capacity 1 they also record
// the hand-off latency: now − the previous holder's release time, on the shared clock (exact: the previous
// holder is the only writer of that time). Runs from the shared start word until the shared stop time.
import { parentPort } from 'node:worker_threads'
import type { MessagePort } from 'node:worker_threads'
import { MessageSemaphoreClient } from '../../../bench/_message-semaphore.ts'
import { sharedNow } from '../../../core/clock.ts'
import { SharedSemaphore } from '../../../core/semaphore.ts'
import type { SemaphoreHandle } from '../../../core/semaphore.ts'

/** Int32 words of `control`. */
export const kStart = 0
export const kInUse = 1
export const kViolations = 2
/** Float64 words of `times`. */
export const kStopAt = 0
export const kReleasedAt = 1

export interface ContenderJob {
  kind: 'shared' | 'message'
  handle?: SemaphoreHandle
  port?: MessagePort
  loops: number
  capacity: number
  control: Int32Array
  times: Float64Array
}

export interface ContenderResult {
  grants: number
  latenciesUs: Float64Array
}

// The bench imports this module for its constants: only a worker has a parentPort.
parentPort?.once('message', (job: ContenderJob) => {
  const port = parentPort!
  const sem = job.kind === 'shared' ? SharedSemaphore.from(job.handle!) : new MessageSemaphoreClient(job.port!)
  const { control, times, capacity } = job
  const latencies: number[] = []
  let grants = 0
  const loop = async (): Promise<void> => {
    while (sharedNow() < times[kStopAt]!) {
      const permit = await sem.acquire(1)
      const now = sharedNow()
      if (Atomics.add(control, kInUse, 1) >= capacity) Atomics.add(control, kViolations, 1)
      grants++
      if (capacity === 1 && times[kReleasedAt]! > 0) latencies.push((now - times[kReleasedAt]!) * 1000)
      Atomics.sub(control, kInUse, 1)
      if (capacity === 1) times[kReleasedAt] = sharedNow()
      permit.release()
    }
  }
  // Start protocol: report ready, block until the main thread stores 1 in kStart and notifies (Atomics.wait
  // returns at once if it already did), so that every worker starts together.
  port.postMessage({ ready: true })
  Atomics.wait(control, kStart, 0)
  Promise.all(Array.from({ length: job.loops }, loop)).then(() => {
    const result: ContenderResult = { grants, latenciesUs: Float64Array.from(latencies) }
    port.postMessage(result)
  })
})

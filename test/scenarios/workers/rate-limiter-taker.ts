// Worker side of test/scenarios/rate-limiter-threads.ts: receives the limiter's handle by postMessage, reports
// ready, blocks on the start word (Atomics.wait is allowed off the main thread), then takes tokens until stopAt.
import { parentPort } from 'node:worker_threads'
import type { SharedRateLimiterHandle } from '../../../core/rate-limiter.ts'
import { takeUntil } from '../rate-limiter-taker.ts'

/** Index of the start word in `start` (an Int32Array): 0 until the main thread stores 1 and notifies. */
const kStarted = 0

interface Job {
  handle: SharedRateLimiterHandle
  start: Int32Array
  stopAt: Float64Array
  thread: number
  maxN: number
}

const port = parentPort!
port.once('message', (job: Job) => {
  port.postMessage({ ready: true })
  Atomics.wait(job.start, kStarted, 0)
  const { thread, maxN } = job
  takeUntil(job.handle, { thread, stopAt: job.stopAt[0]!, maxN, seed: thread }).then(
    (admissions) => port.postMessage({ admissions }),
    (error: unknown) => port.postMessage({ error: String(error) }),
  )
})

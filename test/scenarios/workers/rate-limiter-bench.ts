// Worker side of bench/rate-limiter.bench.ts: waits on the start word, then calls tryAcquire() on the shared
// limiter in a tight loop for `durationMs` and reports how many calls it made and how many were admitted.
import { parentPort } from 'node:worker_threads'
import { sharedNow } from '../../../core/clock.ts'
import { SharedRateLimiter } from '../../../core/rate-limiter.ts'
import type { SharedRateLimiterHandle } from '../../../core/rate-limiter.ts'

/** Index of the start word in `start` (an Int32Array): 0 until the bench stores 1 and notifies. */
const kStarted = 0

const port = parentPort!
interface Job {
  handle: SharedRateLimiterHandle
  start: Int32Array
  durationMs: number
}

port.once('message', ({ handle, start, durationMs }: Job) => {
  const limiter = SharedRateLimiter.from(handle)
  port.postMessage({ ready: true })
  Atomics.wait(start, kStarted, 0)
  const stopAt = sharedNow() + durationMs
  let calls = 0
  let admitted = 0
  // The clock is read once per 1024 calls so the loop measures the limiter, not the clock.
  while (calls % 1024 !== 0 || sharedNow() < stopAt) {
    calls++
    if (limiter.tryAcquire()) admitted++
  }
  port.postMessage({ calls, admitted })
})

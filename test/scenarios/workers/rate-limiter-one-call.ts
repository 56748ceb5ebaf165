// Worker side of test/scenarios/rate-limiter-keep-alive.ts and rate-limiter-clock.ts: exactly one limiter call
// on the default (shared) clock and nothing else (no message listener, so nothing but that call keeps this worker
// alive), then report its instant on the shared clock and end.
// workerData.call: 'acquire' waits for one token; 'empty' takes the whole bucket with tryAcquire().
import { parentPort, workerData } from 'node:worker_threads'
import { sharedNow } from '../../../core/clock.ts'
import { SharedRateLimiter } from '../../../core/rate-limiter.ts'
import type { SharedRateLimiterHandle } from '../../../core/rate-limiter.ts'

const { handle, call } = workerData as { handle: SharedRateLimiterHandle; call: 'acquire' | 'empty' }
const limiter = SharedRateLimiter.from(handle)
if (call === 'empty') {
  const emptied = limiter.tryAcquire(limiter.rate)
  parentPort!.postMessage({ emptied, at: sharedNow() })
} else {
  void limiter.acquire().then(() => parentPort!.postMessage({ at: sharedNow() }))
}

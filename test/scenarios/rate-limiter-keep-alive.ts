// A pending acquire() must keep its thread alive until it is admitted: it waits on a plain (ref'd) timer, unlike
// a pending Atomics.waitAsync, which keeps no runtime alive. The limiter (1 per 300 ms) is emptied first, so the
// next acquire waits ~300 ms with NOTHING else pending: no server, no port listener, no await at top level.
// - `main`: the main thread's acquire; the verdict is printed from its `.then`, so if the process exited early
//   there is no verdict at all.
// - `worker`: a worker's acquire; the handle goes in workerData so the worker has no message listener that
//   would keep it alive by itself. The main thread reports what came first: the admission or the worker's exit.
// - `wait-async`: the negative control, a pending Atomics.waitAsync with a 300 ms timeout in place of acquire():
//   the process exits without a verdict on all three runtimes, which proves this scenario can tell.
import process from 'node:process'
import { sharedNow } from '../../core/clock.ts'
import { SharedRateLimiter } from '../../core/rate-limiter.ts'
import { runtimeName, spawnTsWorker } from './rate-limiter-taker.ts'
import { report } from './_verdict.ts'

const PER_MS = 300
const limiter = new SharedRateLimiter({ rate: 1, per: PER_MS })
const emptied = limiter.tryAcquire()
const waitFrom = sharedNow()

if (process.argv.includes('worker')) {
  const worker = spawnTsWorker(new URL('./workers/rate-limiter-one-call.ts', import.meta.url), {
    handle: limiter.handle,
    call: 'acquire',
  })
  let admittedAfterMs: number | undefined
  worker.on('message', (message: { at: number }) => (admittedAfterMs = message.at - waitFrom))
  worker.once('error', (error) => report({ error: String(error) }))
  worker.once('exit', (exitCode) => {
    report({ runtime: runtimeName(), where: 'worker', emptied, admittedAfterMs: admittedAfterMs ?? null, exitCode })
  })
} else if (process.argv.includes('wait-async')) {
  const pending = Atomics.waitAsync(new Int32Array(new SharedArrayBuffer(4)), 0, 0, PER_MS)
  void Promise.resolve(pending.value).then(() => {
    report({ runtime: runtimeName(), where: 'wait-async', emptied, admittedAfterMs: sharedNow() - waitFrom })
  })
} else {
  void limiter.acquire().then(() => {
    report({ runtime: runtimeName(), where: 'main', emptied, admittedAfterMs: sharedNow() - waitFrom })
  })
}

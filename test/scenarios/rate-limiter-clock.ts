// Do threads agree on the limiter's clock? A worker empties a 1-per-300-ms bucket (default clock) and reports the
// instant; the main thread then waits for one token (default clock). Main must be admitted no earlier than 300 ms
// after the worker emptied the bucket. With a per-thread clock (performance.now() alone: Bun 1.4's worker origin
// is 6 ms and Deno 2.9's 20 ms later than main's) main would see the worker's booking as that much older and be
// admitted early, which this verdict exposes. Both instants are read with sharedNow(), as the limiter does.
import { sharedNow } from '../../core/clock.ts'
import { SharedRateLimiter } from '../../core/rate-limiter.ts'
import { runtimeName, spawnTsWorker } from './rate-limiter-taker.ts'
import { runMain } from './_verdict.ts'

const PER_MS = 300

await runMain(async () => {
  const limiter = new SharedRateLimiter({ rate: 1, per: PER_MS })
  const worker = spawnTsWorker(new URL('./workers/rate-limiter-one-call.ts', import.meta.url), {
    handle: limiter.handle,
    call: 'empty',
  })
  try {
    const emptied = await new Promise<{ emptied: boolean; at: number }>((resolve, reject) => {
      worker.once('message', resolve)
      worker.once('error', reject)
    })
    await limiter.acquire()
    const admittedAt = sharedNow()
    return { runtime: runtimeName(), perMs: PER_MS, emptied: emptied.emptied, admittedAfterMs: admittedAt - emptied.at }
  } finally {
    await worker.terminate()
  }
})

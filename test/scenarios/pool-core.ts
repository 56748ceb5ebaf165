// The streaming call's core behaviours through the worker pool (createStreamRunner({ workers: 2 })), run by node,
// bun and deno against a test upstream started by vitest (in Node). Usage:
//   <runtime> pool-core.ts <upstream base url incl. /v1> <api key> <id prefix>
// Reports what the clients saw plus sharedNow() abort times; the test compares them with the upstream's records.
// It closes its runners and then simply ends: the test checks that the process exits on its own (nothing leaks).
import { createStreamRunner } from '../../core/pool/stream-runner.ts'
import { createWorkerPool } from '../../core/pool/worker-pool.ts'
import {
  clientOptions,
  content,
  coreCalls,
  coreSetup,
  coreVerdict,
  errorCode,
  idleVerdict,
  prefix,
  queueTimeout,
  readAll,
  request,
} from './_stream-core.ts'
import { runMain } from './_verdict.ts'

const CAPACITY = 8

await runMain(async () => {
  const setup = coreSetup(CAPACITY)
  const { semaphore, telemetry } = setup
  const runner = createStreamRunner({
    workers: 2,
    ...clientOptions(setup),
    transform: new URL('../../examples/redact-transform.ts', import.meta.url),
  })
  await runner.ready

  const calls = await coreCalls(runner)

  // A worker killed mid-stream: its stream ends with an error event, its permits come back, it is replaced.
  const crashPool = createWorkerPool({ workers: 1, semaphore, telemetry, idleTimeoutMs: 5_000 })
  await crashPool.ready
  const doomed = await crashPool.stream(request(`id=${prefix}-crash&chunks=5&stallAfter=1&stallMs=3000`))
  const doomedReader = doomed.body!.getReader()
  const first = new TextDecoder().decode((await doomedReader.read()).value)
  doomedReader.releaseLock()
  const heldDuringCrash = CAPACITY - semaphore.available
  await crashPool.threads[0]!.terminate()
  const crashed = await readAll(doomed)
  const afterCrash = await readAll(await crashPool.stream(request(`id=${prefix}-after-crash&chunks=2`)))
  await crashPool.close()

  const holder = await semaphore.acquire(CAPACITY)
  const quick = createStreamRunner({ workers: 1, semaphore, telemetry, queueTimeoutMs: 100 })
  await quick.ready
  const queue = await queueTimeout(() => quick.stream(request(`id=${prefix}-queued`)))
  holder.release()

  const active = runner.active + quick.active + crashPool.active
  await Promise.all([runner.close(), quick.close()])

  return {
    ...coreVerdict(calls, setup.log),
    crash: {
      first: first.startsWith('data: '),
      heldDuringCrash,
      code: errorCode(crashed.events),
      done: crashed.text.includes('[DONE]'),
      afterCrash: content(afterCrash.events),
    },
    queue,
    ...idleVerdict(setup, calls.retryId, active),
  }
})

// The streaming call's core behaviours, run by node, bun and deno against a test upstream started by vitest
// (in Node). Usage: <runtime> upstream-core.ts <upstream base url incl. /v1> <api key> <id prefix>
// Reports what the client saw plus sharedNow() abort times; the test compares them with the upstream's records.
import { createUpstreamClient } from '../../core/upstream/client.ts'
import {
  clientOptions,
  coreCalls,
  coreSetup,
  coreVerdict,
  idleVerdict,
  prefix,
  queueTimeout,
  request,
} from './_stream-core.ts'
import { runMain } from './_verdict.ts'

const CAPACITY = 4

await runMain(async () => {
  const setup = coreSetup(CAPACITY)
  const { semaphore, telemetry } = setup
  const client = createUpstreamClient(clientOptions(setup))

  const calls = await coreCalls(client)

  const holder = await semaphore.acquire(CAPACITY)
  const quick = createUpstreamClient({ semaphore, telemetry, queueTimeoutMs: 100 })
  const queue = await queueTimeout(() => quick.stream(request(`id=${prefix}-queued`)))
  holder.release()

  return {
    ...coreVerdict(calls, setup.log),
    queue,
    ...idleVerdict(setup, calls.retryId, client.active + quick.active),
  }
})

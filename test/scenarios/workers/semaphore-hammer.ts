// Worker side of the semaphore stress and crash scenarios: attach, report the owner id, hammer, report.
import { parentPort } from 'node:worker_threads'
import { hammer } from '../semaphore-hammer.ts'
import type { HammerJob } from '../semaphore-hammer.ts'

const port = parentPort!
port.once('message', (job: HammerJob) => {
  hammer(job, (owner) => port.postMessage({ owner })).then(
    (result) => port.postMessage({ result }),
    (error: unknown) => {
      port.postMessage({ error: error instanceof Error ? (error.stack ?? error.message) : String(error) })
    },
  )
})

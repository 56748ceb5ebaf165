// Does a pending acquire keep the process alive, and is the hold dropped once nothing is pending? The only
// other thread is an unref'd worker (it keeps nothing alive) that holds the one permit.
//   granted: the main thread's only pending work is acquire(); the worker releases 1 s later. Must report.
//   timeout / abort: acquire() gives up after 100 ms. Must report.
//   control: a bare Atomics.waitAsync that the worker notifies 1 s later, no hold: the process exits first
//            on every runtime (shared/research/concurrency.md §3). Proves this harness detects an early exit.
// In every mode the script must then exit promptly on its own: the test checks the exit code and that the
// process was not killed at its deadline.
import { SharedSemaphore } from '../../core/semaphore.ts'
import type { AgentCommand, AgentReport } from './workers/semaphore-agent.ts'
import { nextMessage, runtimeName, spawnWorker } from './semaphore-spawn.ts'
import { report } from './_verdict.ts'

const mode = process.argv[2] ?? 'granted'
// Long enough that no incidental handle (a runtime's own start-up or shutdown work) bridges the wait.
const LATER_MS = 1_000
const sem = new SharedSemaphore({ capacity: 1 })
const worker = spawnWorker('semaphore-agent')
const send = (command: AgentCommand): void => worker.postMessage(command)
const attached = nextMessage<AgentReport>(worker, (m) => m.op === 'attached')
send({ op: 'attach', handle: sem.handle })
await attached
const tried = nextMessage<AgentReport>(worker, (m) => m.op === 'tried')
send({ op: 'try', id: 'all', weight: 1 })
const holding = await tried
// From here on, the worker keeps nothing alive.
worker.unref()
const started = performance.now()
const elapsed = (): number => Math.round(performance.now() - started)

if (mode === 'granted') {
  void sem.acquire(1).then((permit) => {
    report({ runtime: runtimeName(), mode, holding, outcome: 'granted', weight: permit.weight, waitedMs: elapsed() })
    permit.release()
  })
  send({ op: 'release', id: 'all', afterMs: LATER_MS })
} else if (mode === 'timeout' || mode === 'abort') {
  const options = mode === 'timeout' ? { timeoutMs: 100 } : { signal: AbortSignal.timeout(100) }
  void sem.acquire(1, options).catch((error: { name: string; code?: string }) => {
    const code = error.code ?? null
    report({ runtime: runtimeName(), mode, holding, outcome: error.name, code, waitedMs: elapsed() })
  })
} else {
  const word = new Int32Array(new SharedArrayBuffer(4))
  const wait = Atomics.waitAsync(word, 0, 0)
  send({ op: 'notify', word, afterMs: LATER_MS })
  const woken = (): void => report({ runtime: runtimeName(), mode, outcome: 'woken', waitedMs: elapsed() })
  if (wait.async) void wait.value.then(woken)
}

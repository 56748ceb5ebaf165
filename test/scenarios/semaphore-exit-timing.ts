// Is a worker stopped when its 'exit' event fires after `terminate()`? reclaim() must only run for threads that
// have stopped. A spinner worker (workers/semaphore-spinner.ts) counts in a microtask-only loop; after 'exit',
// the parent watches the counter for 100 ms. Measured: node and bun, stopped; deno 2.9.6, still counting (its
// 'exit' comes ~0.05 ms after terminate(), and the worker runs on until it returns to its event loop).
import { exited, runtimeName, spawnWorker } from './semaphore-spawn.ts'
import { report } from './_verdict.ts'

const ROUNDS = 3
const ranAfterExit: number[] = []
for (let round = 0; round < ROUNDS; round++) {
  const counter = new Int32Array(new SharedArrayBuffer(4))
  const worker = spawnWorker('semaphore-spinner', counter)
  await new Promise((resolve) => worker.once('message', resolve))
  const gone = exited(worker)
  void worker.terminate()
  await gone
  const atExit = Atomics.load(counter, 0)
  await new Promise((resolve) => setTimeout(resolve, 100))
  ranAfterExit.push(Atomics.load(counter, 0) - atExit)
}
report({ runtime: runtimeName(), stoppedAtExit: ranAfterExit.map((ops) => ops === 0) })
// A worker still running would keep this process alive.
process.exit(0)

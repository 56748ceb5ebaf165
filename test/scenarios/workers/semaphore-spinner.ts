// A worker that never returns to its event loop: it counts in a microtask-only loop (as a thread busy with
// promise chains does) until it is stopped.
import { parentPort, workerData } from 'node:worker_threads'

const counter = workerData as Int32Array
parentPort!.postMessage('ready')
void (async () => {
  for (;;) {
    Atomics.add(counter, 0, 1)
    await Promise.resolve()
  }
})()

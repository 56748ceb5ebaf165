// Proves each runtime can load the core (and its npm dependencies from node_modules) and the shared clock.
import { createNanoEvents } from 'nanoevents'
import { SluiceError, TimeoutError } from '../../core/mod.ts'
import { runMain } from './_verdict.ts'

await runMain(async () => {
  const emitter = createNanoEvents<{ ping: (n: number) => void }>()
  let got = 0
  emitter.on('ping', (n) => (got = n))
  emitter.emit('ping', 7)
  const error = new TimeoutError('t', 5)
  return { got, code: error.code, isSluice: error instanceof SluiceError, sab: typeof SharedArrayBuffer, waitAsync: typeof Atomics.waitAsync }
})

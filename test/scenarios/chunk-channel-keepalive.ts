// What keeps a process alive while a stream waits. The worker is unref'd and the channel ports are unref'd by
// the hubs, so the only thing that may keep this process alive during the worker's 200 ms pause is the reader
// hub's holdAlive() while a reader is open. Afterwards nothing must: the script neither terminates the worker nor
// calls process.exit, so the test checks that the process ends on its own with exit code 0.
// With the argument `no-reader` the script waits 200 ms for a worker message without any reader open: the
// process must exit before the verdict (an unref'd worker and unref'd ports keep nothing alive, so the first case
// can fail).
import { MessageChannel } from 'node:worker_threads'
import process from 'node:process'
import { ChunkReaderHub } from '../../core/pool/chunk-channel.ts'
import { runtimeName, spawnTsWorker } from './chunk-channel-fixtures.ts'
import { runMain } from './_verdict.ts'

const worker = spawnTsWorker(new URL('./workers/chunk-channel-producer.ts', import.meta.url))
worker.unref()
const { port1, port2 } = new MessageChannel()
const hub = new ChunkReaderHub()
hub.attach(port1)

await runMain(async () => {
  const shared = new SharedArrayBuffer(4)
  if (process.argv.includes('no-reader')) {
    worker.postMessage({ kind: 'init', port: port2, shared }, [port2])
    // Listened to exactly as the hubs listen: addEventListener, start, unref.
    const reply = new MessageChannel()
    worker.postMessage({ kind: 'pong-later', reply: reply.port2 }, [reply.port2])
    await new Promise<void>((resolve) => {
      reply.port1.addEventListener('message', () => resolve())
      reply.port1.start()
      reply.port1.unref()
    })
    return { runtime: runtimeName(), unexpected: 'still alive without a reader' }
  }
  // Open first: from here on the hub holds the process alive, even before the worker has started.
  const reader = hub.open()
  worker.postMessage({ kind: 'init', port: port2, shared }, [port2])
  worker.postMessage({ kind: 'run', name: 'delayed', handle: reader.handle, params: { delayMs: 200 } })
  let text = ''
  for await (const chunk of reader.stream) text += new TextDecoder().decode(chunk)
  return { runtime: runtimeName(), text, openStreams: hub.openStreams }
})

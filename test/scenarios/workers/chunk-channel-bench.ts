// Worker side of bench/chunk-channel.bench.ts: produces streams from a ReadableStream source (the shape of an
// upstream fetch body) into a ChunkWriter, on the worker's shared hub (multiplexed) or on a port of its own.
import { parentPort } from 'node:worker_threads'
import type { MessagePort } from 'node:worker_threads'
import { setImmediate } from 'node:timers'
import { ChunkWriterHub } from '../../../core/pool/chunk-channel.ts'
import type { ChunkChannelHandle, ChunkWriter } from '../../../core/pool/chunk-channel.ts'

interface StreamTask {
  kind: 'stream'
  handle: ChunkChannelHandle
  port?: MessagePort
  size: number
  count: number
  /** Write from a plain loop instead of reading a source stream: the channel's own cost. */
  loop?: boolean
}

interface ManyTask {
  kind: 'many'
  handles: ChunkChannelHandle[]
  ports?: MessagePort[]
  size: number
  rounds: number
  /** Keep the writers open after the rounds until { kind: 'release' } (memory measurement). */
  hold?: boolean
}

const port = parentPort!
let shared: ChunkWriterHub
let held: Array<{ writer: ChunkWriter; hub: ChunkWriterHub }> = []
const heldPorts: MessagePort[] = []

/** `count` chunks of `size` bytes; byte 0 of chunk i is i & 255 (the bench checks it). */
export function chunkSource(size: number, count: number): ReadableStream<Uint8Array> {
  let index = 0
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (index === count) return controller.close()
      const chunk = new Uint8Array(size)
      chunk[0] = index++ & 255
      controller.enqueue(chunk)
    },
  })
}

const hubFor = (own: MessagePort | undefined): ChunkWriterHub => (own === undefined ? shared : new ChunkWriterHub(own))

async function stream(task: StreamTask): Promise<void> {
  const hub = hubFor(task.port)
  const writer = hub.open(task.handle)
  if (task.loop) {
    const chunk = new Uint8Array(task.size)
    for (let index = 0; index < task.count; index++) {
      chunk[0] = index & 255
      await writer.write(chunk)
    }
  } else {
    for await (const chunk of chunkSource(task.size, task.count)) await writer.write(chunk)
  }
  await writer.close()
  if (hub !== shared) hub.close()
}

async function many(task: ManyTask): Promise<void> {
  const writers = task.handles.map((handle, index) => {
    const hub = hubFor(task.ports?.[index])
    return { writer: hub.open(handle), hub }
  })
  const chunk = new Uint8Array(task.size)
  for (let round = 0; round < task.rounds; round++) {
    await Promise.all(writers.map(({ writer }) => writer.write(chunk)))
    // A trickle: every stream's next chunk comes in a later turn of the loop, as upstream tokens do.
    await new Promise((resolve) => setImmediate(resolve))
  }
  if (task.hold) {
    held = writers
    port.postMessage({ kind: 'holding' })
    return
  }
  await release(writers)
}

async function release(writers: Array<{ writer: ChunkWriter; hub: ChunkWriterHub }>): Promise<void> {
  await Promise.all(writers.map(({ writer }) => writer.close()))
  for (const { hub } of writers) if (hub !== shared) hub.close()
}

/** Listens on each port the way a ChunkWriterHub does (listener, start, unref): the transport's own cost. */
function holdPorts(ports: MessagePort[]): void {
  for (const held of ports) {
    held.addEventListener('message', () => {})
    held.start()
    held.unref()
    heldPorts.push(held)
  }
  port.postMessage({ kind: 'holding-ports', count: heldPorts.length })
}

port.on('message', (message: { kind: string; port?: MessagePort }) => {
  if (message.kind === 'init') shared = new ChunkWriterHub(message.port!)
  else if (message.kind === 'stream') void stream(message as StreamTask)
  else if (message.kind === 'many') void many(message as ManyTask)
  else if (message.kind === 'release') void release(held.splice(0))
  else if (message.kind === 'hold-ports') holdPorts((message as unknown as { ports: MessagePort[] }).ports)
  else if (message.kind === 'close-ports') heldPorts.splice(0).forEach((held) => held.close())
})

/**
 * Chunk channel benchmark: what a byte stream costs when its producer runs in a worker thread.
 *
 *   node --expose-gc --import tsx bench/chunk-channel.bench.ts [--only=memory,setup,throughput] [--window=BYTES]
 *   bun bench/chunk-channel.bench.ts · deno run -A --v8-flags=--expose-gc bench/chunk-channel.bench.ts
 *
 * - throughput, one stream, 64 B / 1 KiB / 16 KiB chunks (4 MiB per sample), chunks/s and MiB/s:
 *   - in-process: the source ReadableStream piped through a TransformStream, read in the same thread;
 *   - channel (mux): the source read in a worker, written to a ChunkWriter on the worker's shared port;
 *   - channel (own port): the same with a new MessageChannel for the stream (setup included);
 *   - channel (mux), writer loop: the worker writes from a plain loop, no source stream (the channel's own cost).
 * - setup: stream setup, open → one 64 B chunk → end, sequentially, on the shared port vs a new MessageChannel each.
 *   and 1000 concurrent trickling streams (20 rounds of one 100 B chunk each, one round per turn of the worker's
 *   loop): aggregate chunks/s, shared port vs one port per stream;
 * - memory: what a port per stream adds (10 000 MessageChannels held open as the hubs hold them), process RSS.
 * Every variant is checked for correctness (byte count and per-chunk marker bytes) before it is timed.
 * Figures are indicative: one machine, two shared cores (see bench/README.md).
 */
import { MessageChannel, type MessagePort } from 'node:worker_threads'
import process from 'node:process'
import { fileURLToPath } from 'node:url'
import { Bench } from 'tinybench'
import { ChunkReaderHub } from '../core/pool/chunk-channel.ts'
import type { ChunkLink, ChunkReader } from '../core/pool/chunk-channel.ts'
import { runtimeName, spawnTsWorker } from '../test/scenarios/chunk-channel-fixtures.ts'

const SIZES = [64, 1024, 16_384]
const CHANNEL_VARIANTS = {
  'channel (mux)': {},
  'channel (own port)': { own: true },
  'channel (mux), writer loop': { loop: true },
}
const BYTES_PER_SAMPLE = 4 * 1024 * 1024
const MIB = 1024 * 1024

interface Setup {
  worker: ReturnType<typeof spawnTsWorker>
  hub: ChunkReaderHub
  window: number
}

async function start(window: number): Promise<Setup> {
  const worker = spawnTsWorker(new URL('../test/scenarios/workers/chunk-channel-bench.ts', import.meta.url))
  const hub = new ChunkReaderHub({ window })
  const { port1, port2 } = new MessageChannel()
  hub.attach(port1)
  worker.postMessage({ kind: 'init', port: port2 }, [port2])
  return { worker, hub, window }
}

/** A stream of its own port: the port to send to the worker, and `close()` for when the stream ended. */
function ownPort(hub: ChunkReaderHub): { port: MessagePort; close: () => void } {
  const { port1, port2 } = new MessageChannel()
  const link: ChunkLink = hub.attach(port1)
  return {
    port: port2,
    close: () => {
      link.close()
      port1.close()
    },
  }
}

/** Reads `reader` to the end; with `verify`, checks that byte k·size is k & 255 (chunk markers, in order). */
async function drain(reader: ChunkReader, size: number, verify: boolean): Promise<number> {
  let bytes = 0
  for await (const chunk of reader.stream) {
    if (verify) {
      for (let offset = (size - (bytes % size)) % size; offset < chunk.byteLength; offset += size) {
        const index = (bytes + offset) / size
        if (chunk[offset] !== (index & 255)) throw new Error(`chunk ${index}: marker ${chunk[offset]}`)
      }
    }
    bytes += chunk.byteLength
  }
  return bytes
}

function source(size: number, count: number): ReadableStream<Uint8Array> {
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

async function inProcess(size: number, count: number): Promise<number> {
  let bytes = 0
  for await (const chunk of source(size, count).pipeThrough(new TransformStream())) bytes += chunk.byteLength
  return bytes
}

async function throughChannel(
  setup: Setup,
  size: number,
  count: number,
  { own = false, loop = false, verify = false } = {},
): Promise<number> {
  const reader = setup.hub.open()
  const port = own ? ownPort(setup.hub) : undefined
  const task = { kind: 'stream', handle: reader.handle, size, count, port: port?.port, loop }
  setup.worker.postMessage(task, port ? [port.port] : [])
  const bytes = await drain(reader, size, verify)
  port?.close()
  return bytes
}

function many(setup: Setup, streams: number, rounds: number, own: boolean, hold = false) {
  const readers = Array.from({ length: streams }, () => setup.hub.open())
  const ports = own ? readers.map(() => ownPort(setup.hub)) : undefined
  const task = {
    kind: 'many',
    handles: readers.map((r) => r.handle),
    size: 100,
    rounds,
    hold,
    ports: ports?.map((p) => p.port),
  }
  setup.worker.postMessage(task, ports?.map((p) => p.port) ?? [])
  return { readers, ports }
}

async function manyToEnd(setup: Setup, streams: number, rounds: number, own: boolean): Promise<number> {
  const { readers, ports } = many(setup, streams, rounds, own)
  const totals = await Promise.all(readers.map((reader) => drain(reader, 100, false)))
  for (const port of ports ?? []) port.close()
  return totals.reduce((sum, bytes) => sum + bytes, 0)
}

const expectEqual = (actual: number, expected: number, what: string): void => {
  if (actual !== expected) throw new Error(`${what}: got ${actual}, expected ${expected}`)
}

function perSecond(bench: Bench, name: string): number {
  const result = bench.getTask(name)?.result
  if (result?.state !== 'completed') throw new Error(`${name}: ${result?.state ?? 'missing'}`)
  return 1000 / result.latency.mean
}

const round = (value: number, digits = 0): number => Number(value.toFixed(digits))

export interface ChunkChannelBenchOptions {
  /** Sections to run; default all. */
  only?: Array<'memory' | 'setup' | 'throughput'>
  /** Credit window per stream in bytes; default 65 536 (the hub's default). */
  window?: number
}

/** Runs the sections and prints their tables (memory first, while the heap is still small). */
export async function run({ only, window = 65_536 }: ChunkChannelBenchOptions = {}): Promise<void> {
  const wanted = (section: 'memory' | 'setup' | 'throughput'): boolean => only === undefined || only.includes(section)
  const setup = await start(window)
  console.log(`chunk channel on ${runtimeName()}, window ${window} B (indicative; see bench/README.md)`)
  if (wanted('memory')) await memorySection(setup)
  if (wanted('throughput')) await throughputSection(setup)
  if (wanted('setup')) await setupSection(setup)
  await setup.worker.terminate()
}

async function throughputSection(setup: Setup): Promise<void> {
  const throughput = new Bench({ name: 'chunk channel throughput', time: 1500, warmupTime: 300 })
  for (const size of SIZES) {
    const count = BYTES_PER_SAMPLE / size
    expectEqual(await inProcess(size, count), BYTES_PER_SAMPLE, `in-process ${size}`)
    for (const [variant, options] of Object.entries(CHANNEL_VARIANTS)) {
      const bytes = await throughChannel(setup, size, count, { ...options, verify: true })
      expectEqual(bytes, BYTES_PER_SAMPLE, `${variant} ${size}`)
      throughput.add(`${variant} ${size} B`, async () => void (await throughChannel(setup, size, count, options)))
    }
    throughput.add(`in-process ${size} B`, async () => void (await inProcess(size, count)))
  }
  await throughput.run()
  console.table(
    SIZES.flatMap((size) =>
      ['in-process', ...Object.keys(CHANNEL_VARIANTS)].map((variant) => {
        const samplesPerSecond = perSecond(throughput, `${variant} ${size} B`)
        return {
          variant,
          'chunk B': size,
          'chunks/s': round((samplesPerSecond * BYTES_PER_SAMPLE) / size),
          'MiB/s': round((samplesPerSecond * BYTES_PER_SAMPLE) / MIB),
        }
      })
    ),
  )
}

async function setupSection(setup: Setup): Promise<void> {
  const streams = 1000
  const rounds = 20
  const setupBench = new Bench({ name: 'chunk channel setup', time: 1500, warmupTime: 300 })
  expectEqual(await manyToEnd(setup, streams, rounds, false), streams * rounds * 100, 'many mux')
  expectEqual(await manyToEnd(setup, streams, rounds, true), streams * rounds * 100, 'many own')
  setupBench
    .add('open + 1 chunk + end (mux)', async () => void (await throughChannel(setup, 64, 1)))
    .add('open + 1 chunk + end (own port)', async () => void (await throughChannel(setup, 64, 1, { own: true })))
    .add(`${streams} trickling streams (mux)`, async () => void (await manyToEnd(setup, streams, rounds, false)))
    .add(`${streams} trickling streams (own port)`, async () => void (await manyToEnd(setup, streams, rounds, true)))
  await setupBench.run()
  console.table([
    ...['mux', 'own port'].map((topology) => ({
      measure: `stream setup (${topology})`,
      'µs per stream': round(1e6 / perSecond(setupBench, `open + 1 chunk + end (${topology})`), 1),
    })),
    ...['mux', 'own port'].map((topology) => ({
      measure: `${streams} streams × ${rounds} chunks of 100 B (${topology})`,
      'chunks/s': round(perSecond(setupBench, `${streams} trickling streams (${topology})`) * streams * rounds),
    })),
  ])
}

/**
 * What a stream costs in transport memory. The multiplexed topology adds none (a stream is a Map entry and its
 * ReadableStream, the same in both); a port per stream adds a MessageChannel whose ends listen in two threads.
 * Measured as process RSS with 10 000 channels held open the way the hubs hold them.
 */
async function memorySection(setup: Setup): Promise<void> {
  const held = 10_000
  const batch = 1000
  const before = await settledRss()
  const mine: MessagePort[] = []
  for (let sent = 0; sent < held; sent += batch) {
    const theirs: MessagePort[] = []
    for (let i = 0; i < batch; i++) {
      const { port1, port2 } = new MessageChannel()
      port1.addEventListener('message', () => {})
      port1.start()
      port1.unref()
      mine.push(port1)
      theirs.push(port2)
    }
    const holding = new Promise((resolve) => setup.worker.once('message', resolve))
    setup.worker.postMessage({ kind: 'hold-ports', ports: theirs }, theirs)
    await holding
  }
  const during = await settledRss()
  setup.worker.postMessage({ kind: 'close-ports' })
  for (const port of mine) port.close()
  console.table([{
    measure: 'one MessageChannel per stream',
    'channels held': held,
    'KiB RSS each': round((during - before) / 1024 / held, 1),
  }])
}

/** RSS after giving the collector a chance (gc() when exposed, e.g. node --expose-gc). */
async function settledRss(): Promise<number> {
  const gc = (globalThis as { gc?: () => void }).gc
  for (let i = 0; i < 3; i++) {
    gc?.()
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return process.memoryUsage().rss
}

const isMain = (import.meta as { main?: boolean }).main ??
  (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1])
if (isMain) {
  // Standalone flags: --only=memory,setup,throughput  --window=BYTES
  const flag = (name: string): string | undefined =>
    process.argv.find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3)
  const only = flag('only')?.split(',') as ChunkChannelBenchOptions['only']
  const window = flag('window')
  await run({ only, window: window === undefined ? undefined : Number(window) })
}

/**
 * Worker pool benchmark: what running upstream calls in worker threads costs and what it buys.
 *
 *   node --import tsx bench/pool.bench.ts          (or through `npm run bench -- pool`)
 *
 * Every stream comes from the test upstream in its own process (`test/upstream/main.ts`, loopback), so both
 * modes pay the same network and the same upstream; only the runner differs.
 * 1. Dispatch: sequential one-chunk streams (role + final + [DONE] in one upstream write), in-process vs through
 *    the pool (1 worker), next to a raw `piscina.run()` of a no-op task: the per-call overhead of the pool.
 * 2. Throughput, no transform: 8 concurrent streams × 1000 content events, events/s, in-process vs pool (2 workers).
 * 3. CPU-heavy transform (≈ 50 µs of busy work per event, bench/_busy-transform.ts): 8 concurrent streams × 250
 *    events, events/s, in-process vs pool (1 and 2 workers). This is the case workers exist for.
 * Each configuration is checked for correctness (content, event count) before it is timed.
 * Figures are indicative: one machine, two shared cores, the upstream process competing for them
 * (see bench/README.md).
 */
import { spawn } from 'node:child_process'
import { availableParallelism } from 'node:os'
import process from 'node:process'
import { fileURLToPath } from 'node:url'
import { createParser } from 'eventsource-parser'
import { Piscina } from 'piscina'
import { Bench } from 'tinybench'
import { createStreamRunner, type ManagedStreamRunner } from '../core/pool/stream-runner.ts'
import { SharedSemaphore } from '../core/semaphore.ts'
import { expectedContent } from '../test/upstream/behaviour.ts'

const STREAMS = 8
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const BUSY = new URL('./_busy-transform.ts', import.meta.url)

interface Upstream {
  url: string
  stop(): void
}

async function startUpstream(): Promise<Upstream> {
  const child = spawn('node', ['--import', 'tsx', 'test/upstream/main.ts', '--port', '0'], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  const url = await new Promise<string>((resolve, reject) => {
    let out = ''
    child.stdout.setEncoding('utf8').on('data', (data: string) => {
      out += data
      const match = /LISTENING (\S+)/.exec(out)
      if (match) resolve(match[1]!)
    })
    child.once('exit', (code) => reject(new Error(`test upstream exited (${code})`)))
  })
  // The upstream exits when its stdin closes.
  return { url, stop: () => child.stdin.end() }
}

function request(upstream: Upstream, model: string): { url: string; body: string } {
  return {
    url: `${upstream.url}/chat/completions`,
    body: JSON.stringify({ model: `mock?${model}`, stream: true, messages: [{ role: 'user', content: 'hi' }] }),
  }
}

/** Reads a stream; returns its content deltas joined and its number of data events ([DONE] excluded). */
async function consume(response: Response): Promise<{ content: string; events: number }> {
  let content = ''
  let events = 0
  const parser = createParser({
    onEvent(event) {
      if (event.data === '[DONE]') return
      events++
      const chunk = JSON.parse(event.data) as { choices: { delta: { content?: string } }[] }
      content += chunk.choices[0]?.delta.content ?? ''
    },
  })
  const decoder = new TextDecoder()
  for await (const chunk of response.body!) parser.feed(decoder.decode(chunk, { stream: true }))
  return { content, events }
}

/** STREAMS concurrent streams of `chunks` content events; checks each; returns the data events read. */
async function concurrent(
  runner: ManagedStreamRunner,
  upstream: Upstream,
  chunks: number,
  verify = false,
): Promise<number> {
  const model = `chunks=${chunks}&eventsPerWrite=5`
  const results = await Promise.all(
    Array.from({ length: STREAMS }, async () => consume(await runner.stream(request(upstream, model)))),
  )
  let events = 0
  for (const result of results) {
    if (verify && result.content !== expectedContent(chunks)) {
      throw new Error(`wrong content (${result.content.length} chars)`)
    }
    events += result.events
  }
  const expected = STREAMS * (chunks + 2)
  if (verify && events !== expected) throw new Error(`got ${events} events, expected ${expected}`)
  return events
}

function meanMs(bench: Bench, name: string): number {
  const result = bench.getTask(name)?.result
  if (result?.state !== 'completed') throw new Error(`${name}: ${result?.state ?? 'missing'}`)
  return result.latency.mean
}

const round = (value: number, digits = 0): number => Number(value.toFixed(digits))

/** Runs the three sections and prints their tables. */
export async function run(): Promise<void> {
  const where = `node ${process.versions.node}, ${availableParallelism()} cores`
  console.log(`worker pool on ${where} (indicative; see bench/README.md)`)
  const upstream = await startUpstream()
  const semaphore = new SharedSemaphore({ capacity: 1024 })
  const runners: ManagedStreamRunner[] = []
  const runner = async (workers: number, transform?: URL): Promise<ManagedStreamRunner> => {
    const made = createStreamRunner({ semaphore, workers, idleTimeoutMs: 30_000, ...(transform ? { transform } : {}) })
    runners.push(made)
    await made.ready
    return made
  }
  try {
    await dispatch(upstream, await runner(0), await runner(1))
    await throughput(upstream, await runner(0), await runner(2))
    await transformed(upstream, await runner(0, BUSY), await runner(1, BUSY), await runner(2, BUSY))
  } finally {
    await Promise.all(runners.map((made) => made.close()))
    upstream.stop()
  }
}

async function dispatch(upstream: Upstream, inProcess: ManagedStreamRunner, pool: ManagedStreamRunner): Promise<void> {
  const filename = new URL('./_noop-worker.mjs', import.meta.url).href
  const piscina = new Piscina({ filename, minThreads: 1, maxThreads: 1, atomics: 'disabled' })
  const one = request(upstream, 'chunks=1&eventsPerWrite=10')
  for (const made of [inProcess, pool]) {
    const result = await consume(await made.stream(one))
    if (result.content !== expectedContent(1) || result.events !== 3) throw new Error('one-chunk stream: wrong output')
  }
  if ((await piscina.run({})) !== 0) throw new Error('no-op task: wrong result')
  const bench = new Bench({ name: 'dispatch', time: 2000, warmupTime: 300 })
  bench
    .add('piscina.run(no-op)', async () => void (await piscina.run({})))
    .add('in-process one-chunk stream', async () => void (await consume(await inProcess.stream(one))))
    .add('pool (1 worker) one-chunk stream', async () => void (await consume(await pool.stream(one))))
  await bench.run()
  await piscina.destroy()
  const inProcessMs = meanMs(bench, 'in-process one-chunk stream')
  console.table(
    bench.tasks.map((task) => ({
      task: task.name,
      'mean µs': round(meanMs(bench, task.name) * 1000),
      'per s': round(1000 / meanMs(bench, task.name)),
      'µs over in-process': task.name.includes('stream') ? round((meanMs(bench, task.name) - inProcessMs) * 1000) : '',
    })),
  )
}

/** Events/s of each runner on the same streams (`chunks` events each), and each as a multiple of in-process. */
async function compareRunners(
  label: string,
  upstream: Upstream,
  modes: Record<string, ManagedStreamRunner>,
  chunks: number,
  timeMs: number,
): Promise<void> {
  const bench = new Bench({ name: label, time: timeMs, warmupTime: 500 })
  for (const [name, made] of Object.entries(modes)) {
    await concurrent(made, upstream, chunks, true)
    bench.add(name, async () => void (await concurrent(made, upstream, chunks)))
  }
  await bench.run()
  const events = STREAMS * (chunks + 2)
  const base = events / meanMs(bench, 'in-process')
  console.table(
    Object.keys(modes).map((name) => ({
      [label]: name,
      'events/s': round((events / meanMs(bench, name)) * 1000),
      '× in-process': round(events / meanMs(bench, name) / base, 2),
    })),
  )
}

function throughput(upstream: Upstream, inProcess: ManagedStreamRunner, pool: ManagedStreamRunner): Promise<void> {
  return compareRunners('no transform', upstream, { 'in-process': inProcess, 'pool (2 workers)': pool }, 1000, 3000)
}

function transformed(
  upstream: Upstream,
  inProcess: ManagedStreamRunner,
  one: ManagedStreamRunner,
  two: ManagedStreamRunner,
): Promise<void> {
  const modes = { 'in-process': inProcess, 'pool (1 worker)': one, 'pool (2 workers)': two }
  return compareRunners('50 µs/event transform', upstream, modes, 250, 4000)
}

const isEntry = process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]
const isMain = (import.meta as { main?: boolean }).main ?? isEntry
if (isMain) await run()

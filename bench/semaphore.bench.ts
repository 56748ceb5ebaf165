/**
 * SharedSemaphore benchmark.
 *
 *   node --import tsx bench/semaphore.bench.ts      (also: bun bench/…, deno run -A bench/…; or `npm run bench`)
 *
 * 1. Uncontended, one thread (tinybench, 100 operations per sample so the timer's cost is amortised):
 *    acquire+release of SharedSemaphore (sync tryAcquire, and awaited acquire) against async-sema
 *    (`new Sema(n)`, acquire/release) and p-limit (`limit(fn)`), ops/s and the ratio to async-sema.
 * 2. Contended: 2 or 4 workers, each with 1 or 8 async loops acquiring and releasing one permit back to back
 *    for 1 s, on a semaphore of capacity 1 (every grant is a hand-off: latency p50/p99 from the previous
 *    holder's release to the next holder's grant, on the shared clock) or 4: grants/s of SharedSemaphore
 *    against the same FIFO semaphore arbitrated by the main thread over postMessage (bench/_message-semaphore.ts),
 *    with the ratio to it. With 1 loop per worker the permit is often free when a worker comes back for it;
 *    with 8 loops per worker the queue never empties (full contention). Hand-offs include same-thread ones
 *    (the next ticket belongs to another loop of the same worker), which the shared semaphore settles
 *    without any wake-up; that is most of its low p50.
 * Every contender is checked first: it must really limit (max in flight = its limit, never above), and in the
 * contended runs no two holders may overlap. Figures are indicative: one machine, two shared cores.
 */
import process from 'node:process'
import { fileURLToPath } from 'node:url'
import { MessageChannel } from 'node:worker_threads'
import { Sema } from 'async-sema'
import pLimit from 'p-limit'
import { Bench } from 'tinybench'
import { sharedNow } from '../core/clock.ts'
import { SharedSemaphore } from '../core/semaphore.ts'
import { exited, nextMessage, runtimeName, spawnWorker } from '../test/scenarios/semaphore-spawn.ts'
import { kInUse, kReleasedAt, kStart, kStopAt, kViolations } from '../test/scenarios/workers/semaphore-contender.ts'
import type { ContenderJob, ContenderResult } from '../test/scenarios/workers/semaphore-contender.ts'
import { MessageSemaphoreBroker } from './_message-semaphore.ts'

const BATCH = 100
const CONTENDED_MS = 1_000
const round = (value: number, digits = 0): number => Number(value.toFixed(digits))

function check(condition: boolean, what: string): void {
  if (!condition) throw new Error(`bench precondition failed: ${what}`)
}

/** Runs 40 tasks through `limited` (allowing 4 at once); returns the most that were ever in flight. */
async function maxInFlight(limited: (task: () => Promise<void>) => Promise<void>): Promise<number> {
  let inFlight = 0
  let max = 0
  const task = async (): Promise<void> => {
    max = Math.max(max, ++inFlight)
    await new Promise((resolve) => setTimeout(resolve, 1))
    inFlight--
  }
  await Promise.all(Array.from({ length: 40 }, () => limited(task)))
  return max
}

async function uncontended(): Promise<void> {
  const shared = new SharedSemaphore({ capacity: 4 })
  const sema = new Sema(4)
  const limit = pLimit(4)
  const checks = {
    'SharedSemaphore.acquire': await maxInFlight(async (task) => {
      const permit = await shared.acquire(1)
      await task().finally(() => permit.release())
    }),
    'async-sema': await maxInFlight(async (task) => {
      await sema.acquire()
      await task().finally(() => sema.release())
    }),
    'p-limit': await maxInFlight((task) => limit(task)),
  }
  for (const [name, max] of Object.entries(checks)) check(max === 4, `${name} keeps 4 in flight, saw ${max}`)
  check(shared.available === 4 && sema.nrWaiting() === 0 && limit.activeCount === 0, 'all contenders idle')

  const noop = (): void => {}
  const bench = new Bench({ name: 'semaphore, one thread, uncontended', time: 1_000, warmupTime: 200 })
  bench
    .add('async-sema: await acquire(); release() (baseline)', async () => {
      for (let i = 0; i < BATCH; i++) {
        await sema.acquire()
        sema.release()
      }
    })
    .add('SharedSemaphore: tryAcquire()!.release()', () => {
      for (let i = 0; i < BATCH; i++) shared.tryAcquire(1)!.release()
    })
    .add('SharedSemaphore: (await acquire()).release()', async () => {
      for (let i = 0; i < BATCH; i++) (await shared.acquire(1)).release()
    })
    .add('SharedSemaphore: acquire(3) + release, weighted', async () => {
      for (let i = 0; i < BATCH; i++) (await shared.acquire(3)).release()
    })
    .add('p-limit: await limit(noop)', async () => {
      for (let i = 0; i < BATCH; i++) await limit(noop)
    })
  await bench.run()
  const opsPerSecond = bench.tasks.map((task) => {
    const result = task.result
    if (result?.state !== 'completed') throw new Error(`${task.name}: ${result?.state ?? 'missing'}`)
    return { name: task.name, ops: (BATCH * 1000) / result.latency.mean }
  })
  const baseline = opsPerSecond[0]!.ops
  console.table(
    opsPerSecond.map(({ name, ops }) => ({
      case: name,
      'ops/s': round(ops),
      '× async-sema': round(ops / baseline, 2),
    })),
  )
}

interface ContendedRow {
  grantsPerSecond: number
  p50Us: number
  p99Us: number
}

async function contended(
  kind: 'shared' | 'message',
  capacity: number,
  threads: number,
  loops: number,
): Promise<ContendedRow> {
  const sem = new SharedSemaphore({ capacity })
  const broker = new MessageSemaphoreBroker(capacity)
  const control = new Int32Array(new SharedArrayBuffer(3 * 4))
  const times = new Float64Array(new SharedArrayBuffer(2 * 8))
  const workers = Array.from({ length: threads }, () => spawnWorker('semaphore-contender'))
  const gone = workers.map(exited)
  try {
    const results = workers.map((worker) => {
      const ready = nextMessage<{ ready?: true }>(worker, (m) => m.ready === true)
      const done = nextMessage<ContenderResult>(worker, (m) => 'grants' in m)
      const job: ContenderJob = { kind, loops, capacity, control, times }
      if (kind === 'shared') {
        worker.postMessage({ ...job, handle: sem.handle })
      } else {
        const { port1, port2 } = new MessageChannel()
        broker.attach(port1)
        worker.postMessage({ ...job, port: port2 }, [port2])
      }
      return { ready, done }
    })
    await Promise.all(results.map((result) => result.ready))
    const startedAt = sharedNow()
    times[kStopAt] = startedAt + CONTENDED_MS
    Atomics.store(control, kStart, 1)
    Atomics.notify(control, kStart)
    const outcomes = await Promise.all(results.map((result) => result.done))
    const elapsedMs = sharedNow() - startedAt
    check(Atomics.load(control, kViolations) === 0, `${kind}: more than ${capacity} permits were held at once`)
    const idle = Atomics.load(control, kInUse) === 0 && (kind === 'message' || sem.available === capacity)
    check(idle, `${kind}: ends idle`)
    const latencies = Float64Array.from(outcomes.flatMap((o) => Array.from(o.latenciesUs))).sort()
    const at = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN
    const grants = outcomes.reduce((sum, o) => sum + o.grants, 0)
    return { grantsPerSecond: grants / (elapsedMs / 1000), p50Us: at(0.5), p99Us: at(0.99) }
  } finally {
    for (const worker of workers) void worker.terminate()
    await Promise.all(gone)
  }
}

const CONTENDED_CASES = [
  { capacity: 1, threads: 2, loops: 1 },
  { capacity: 1, threads: 2, loops: 8 },
  { capacity: 1, threads: 4, loops: 8 },
  { capacity: 4, threads: 2, loops: 8 },
  { capacity: 4, threads: 4, loops: 8 },
]

async function contendedTable(): Promise<void> {
  const rows = []
  for (const { capacity, threads, loops } of CONTENDED_CASES) {
    const message = await contended('message', capacity, threads, loops)
    const shared = await contended('shared', capacity, threads, loops)
    const latency = (row: ContendedRow): string =>
      capacity === 1 ? `${round(row.p50Us, 1)} / ${round(row.p99Us, 1)}` : '-'
    rows.push({
      capacity,
      'workers × loops': `${threads} × ${loops}`,
      'postMessage grants/s': round(message.grantsPerSecond),
      'shared grants/s': round(shared.grantsPerSecond),
      '× postMessage': round(shared.grantsPerSecond / message.grantsPerSecond, 2),
      'hand-off p50/p99 µs, postMessage': latency(message),
      'shared': latency(shared),
    })
  }
  console.table(rows)
}

/** Runs both sections and prints their tables. */
export async function run(): Promise<void> {
  console.log(`SharedSemaphore on ${runtimeName()} (indicative: one machine, two shared cores)`)
  await uncontended()
  await contendedTable()
}

const isEntry = process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]
if ((import.meta as { main?: boolean }).main ?? isEntry) await run()

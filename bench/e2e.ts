/**
 * `npm run bench:e2e`: every target × workload × run on the same machine in one go, cells in shuffled order (so
 * a neighbour's load or thermal drift spreads over all targets instead of hitting one), the median of the runs
 * reported against `direct`. Prints the tables and writes bench/RESULTS.md; raw reports go to bench/.results/.
 *
 *   npm run bench:e2e -- [--quick] [--runs N] [--targets naive,sluice] [--workloads c100-d0,disconnect]
 *                        [--seed N] [--max-seconds S] [--warmup N] [--no-pin] [--out FILE]
 * @module
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { join, relative } from 'node:path'
import { parseArgs } from 'node:util'
import { createRng } from '../test/chaos/rng.ts'
import { runCell } from './e2e/cell.ts'
import type { CellResult, CellSpec } from './e2e/cell.ts'
import { ms, rate } from './e2e/format.ts'
import { machineInfo } from './e2e/machine.ts'
import { canPin, ROOT } from './e2e/processes.ts'
import { disconnectTable, notAvailable, ratioTable, resultsMarkdown } from './e2e/render.ts'
import { summarize } from './e2e/summary.ts'
import { missingFiles, TARGETS } from './e2e/targets.ts'
import type { Target } from './e2e/targets.ts'
import { WORKLOADS } from './e2e/workloads.ts'
import type { Workload } from './e2e/workloads.ts'

const DEFAULT_RUNS = 3
/**
 * A gateway is a long-running process, so its figures should be those of optimised code: V8 optimises the hot
 * paths only after some thousands of calls. With 50 warmup streams the C=1 cells measured the cold path (sluice's
 * TTFE p50 2.4 ms after 50 warmup streams, 0.8 ms after 3 000; direct's events/s 47k → 133k: the load generator and
 * the upstream warm up too). The warmup uses the 0 ms model, so 2 000 streams cost a few seconds per cell.
 */
const DEFAULT_WARMUP = 2_000

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    runs: { type: 'string' },
    targets: { type: 'string' },
    workloads: { type: 'string' },
    seed: { type: 'string' },
    'max-seconds': { type: 'string' },
    warmup: { type: 'string' },
    'no-pin': { type: 'boolean' },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
})

if (values.help) {
  console.log(`usage: npm run bench:e2e -- [--quick] [--runs N] [--targets a,b] [--workloads a,b] [--seed N]
                          [--max-seconds S] [--warmup N] [--no-pin] [--out FILE]
targets:   ${TARGETS.map((t) => t.name).join(', ')}   (direct is always added: it is the reference)
workloads: ${WORKLOADS.map((w) => w.name).join(', ')}`)
  process.exit(0)
}

function pickByName<T extends { name: string }>(all: readonly T[], list: string | undefined, what: string): T[] {
  if (list === undefined) return [...all]
  const names = list.split(',').map((name) => name.trim()).filter(Boolean)
  const unknown = names.filter((name) => !all.some((item) => item.name === name))
  if (unknown.length > 0) {
    console.error(`unknown ${what}: ${unknown.join(', ')} (known: ${all.map((item) => item.name).join(', ')})`)
    process.exit(2)
  }
  return all.filter((item) => names.includes(item.name))
}

function positive(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback
  const parsed = Number(value)
  if (!Number.isFinite(parsed) || parsed <= 0) {
    console.error(`--${name} must be a positive number, got ${value}`)
    process.exit(2)
  }
  return parsed
}

/** A seeded shuffle (test/chaos/rng.ts), so an odd result can be rerun in the same order. */
function shuffle<T>(items: T[], seed: number): T[] {
  const rng = createRng(seed)
  for (let i = items.length - 1; i > 0; i--) {
    const j = rng.int(0, i)
    ;[items[i], items[j]] = [items[j]!, items[i]!]
  }
  return items
}

const quick = values.quick === true
const runs = Math.floor(positive('runs', values.runs, quick ? 1 : DEFAULT_RUNS))
const seed = Math.floor(positive('seed', values.seed, Math.floor(Math.random() * 2 ** 31) + 1))
const maxSeconds = positive('max-seconds', values['max-seconds'], quick ? 30 : 60)
const warmup = Math.floor(positive('warmup', values.warmup, DEFAULT_WARMUP))
const pin = values['no-pin'] !== true && cpus().length >= 2 && canPin()
const out = values.out ?? join(ROOT, 'bench/RESULTS.md')

const chosen = pickByName(TARGETS, values.targets, 'target')
if (!chosen.some((target) => target.name === 'direct')) chosen.unshift(TARGETS.find((t) => t.name === 'direct')!)
const workloads = pickByName(WORKLOADS, values.workloads, 'workload')
const requestsFor = (workload: Workload): number => (quick ? workload.quickRequests : workload.requests)

const skipped: { target: Target; missing: string[] }[] = []
const targets: Target[] = []
for (const target of chosen) {
  const missing = missingFiles(target)
  if (missing.length > 0) {
    skipped.push({ target, missing })
    console.log(`skip ${target.name}: ${notAvailable(missing)}`)
  } else {
    targets.push(target)
  }
}

const specs: CellSpec[] = []
for (const target of targets) {
  for (const workload of workloads) {
    for (let run = 1; run <= runs; run++) {
      specs.push({ target, workload, run, requests: requestsFor(workload), maxSeconds, pin, warmup })
    }
  }
}
shuffle(specs, seed)

const machine = machineInfo()
const startedAt = new Date()
console.log(
  `${specs.length} cells (${targets.length} targets × ${workloads.length} workloads × ${runs} runs), seed ${seed}, ` +
    `${pin ? 'pinned: target on CPU 0, upstream + load generator on CPU 1' : 'not pinned'}; ` +
    `load average ${machine.loadAverage}`,
)

const results: CellResult[] = []
for (const [index, spec] of specs.entries()) {
  const result = await runCell(spec)
  results.push(result)
  const head = `[${index + 1}/${specs.length}] ${spec.target.name} ${spec.workload.name} run ${spec.run}`
  const report = result.report
  if (!report) {
    console.log(`${head}: FAILED ${result.error?.split('\n')[0] ?? ''}`)
    continue
  }
  const errors = Object.values(report.errors).reduce((sum, n) => sum + n, 0)
  const delay = report.disconnectDelayMs ? `, abort→upstream close p50 ${ms(report.disconnectDelayMs.p50)} ms` : ''
  console.log(
    `${head}: ${rate(report.eventsPerSecond)} events/s, TTFE p50 ${ms(report.ttfeMs.p50)} ms${delay}, ` +
      `${errors} errors${report.stoppedByCap ? ', STOPPED AT CAP' : ''} (${result.seconds.toFixed(1)} s)`,
  )
}

const summaries = summarize(results)
const minutes = (Date.now() - startedAt.getTime()) / 60_000
console.log(`\n${ratioTable(summaries, workloads, targets, false)}`)
const disconnects = disconnectTable(summaries, workloads, targets, false)
if (disconnects) console.log(`\n${disconnects}`)
for (const { target, missing } of skipped) console.log(`skipped ${target.name}: ${notAvailable(missing)}`)

const command = `npm run bench:e2e${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`
const markdown = resultsMarkdown(
  {
    command,
    startedAt,
    minutes,
    runs,
    quick,
    seed,
    pinned: pin,
    machine,
    targets,
    skipped,
    workloads,
    requestsFor,
    warmup,
  },
  summaries,
)
writeFileSync(out, `${markdown}\n`)
const rawDir = join(ROOT, 'bench/.results')
mkdirSync(rawDir, { recursive: true })
const rawFile = join(rawDir, `e2e-${startedAt.toISOString().replaceAll(':', '-')}.json`)
writeFileSync(rawFile, JSON.stringify({ machine, seed, runs, quick, results }, null, 1))
console.log(`\nwrote ${relative(ROOT, out)} and ${relative(ROOT, rawFile)} (${minutes.toFixed(1)} min)`)

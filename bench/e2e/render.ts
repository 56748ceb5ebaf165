/** Renders the benchmark summary as aligned text (console) or Markdown (bench/RESULTS.md). */
import { kib, mib, ms, rate } from './format.ts'
import type { MachineInfo } from './machine.ts'
import { compare, errorText } from './summary.ts'
import type { CellSummary } from './summary.ts'
import type { Target } from './targets.ts'
import { describeWorkload } from './workloads.ts'
import type { Workload } from './workloads.ts'

export function table(headers: readonly string[], rows: readonly string[][], markdown: boolean): string {
  if (markdown) {
    const line = (cells: readonly string[]): string => `| ${cells.join(' | ')} |`
    return [line(headers), line(headers.map(() => '---')), ...rows.map(line)].join('\n')
  }
  const widths = headers.map((header, i) => Math.max(header.length, ...rows.map((row) => (row[i] ?? '').length)))
  const line = (cells: readonly string[]): string => cells.map((cell, i) => cell.padEnd(widths[i]!)).join('  ')
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n').trimEnd()
}

const MIN_STREAMS_FOR_RSS = 100

const signed = (value: number): string => (Number.isFinite(value) ? `${value >= 0 ? '+' : ''}${ms(value)}` : '–')
const ratio = (value: number): string => (Number.isFinite(value) ? `${value.toFixed(2)}×` : '–')

/** The headline table: every streaming workload × target, against direct. */
export function ratioTable(
  summaries: readonly CellSummary[], workloads: readonly Workload[], targets: readonly Target[], markdown: boolean,
): string {
  const rows: string[][] = []
  for (const workload of workloads.filter((w) => w.disconnectAfter === undefined)) {
    const direct = summaries.find((s) => s.workload === workload.name && s.target === 'direct')
    for (const target of targets) {
      const cell = summaries.find((s) => s.workload === workload.name && s.target === target.name)
      if (!cell) continue
      const vs = compare(cell, direct)
      const isDirect = target.name === 'direct'
      rows.push([
        workload.name,
        target.name,
        rate(cell.eventsPerSecond),
        isDirect ? 'ref' : ratio(vs.throughputRatio),
        ms(cell.ttfeP50),
        ms(cell.ttfeP99),
        isDirect ? 'ref' : signed(vs.ttfeOverheadP50),
        isDirect ? 'ref' : signed(vs.ttfeOverheadP99),
        // Below ~100 streams, the garbage collector's few MiB of swing dominate (peak − idle) ÷ C.
        isDirect || workload.concurrency < MIN_STREAMS_FOR_RSS ? '–' : kib(cell.rssPerStreamBytes),
        errorText(cell),
      ])
    }
  }
  const headers = [
    'workload', 'target', 'events/s', '× direct', 'TTFE p50 ms', 'TTFE p99 ms', 'Δp50 ms', 'Δp99 ms',
    'RSS/stream', 'errors',
  ]
  return table(headers, rows, markdown)
}

export function disconnectTable(
  summaries: readonly CellSummary[], workloads: readonly Workload[], targets: readonly Target[], markdown: boolean,
): string {
  const rows: string[][] = []
  for (const workload of workloads.filter((w) => w.disconnectAfter !== undefined)) {
    for (const target of targets) {
      const cell = summaries.find((s) => s.workload === workload.name && s.target === target.name)
      if (!cell) continue
      rows.push([
        workload.name, target.name, ms(cell.disconnectP50), ms(cell.disconnectMax), String(cell.neverClosed),
        errorText(cell),
      ])
    }
  }
  const headers = ['workload', 'target', 'abort → upstream close p50 ms', 'max ms', 'never closed', 'errors']
  return rows.length === 0 ? '' : table(headers, rows, markdown)
}

/** Absolute figures behind the ratios, for the Markdown file. */
export function detailTable(summaries: readonly CellSummary[], targets: readonly Target[]): string {
  const order = (s: CellSummary): number => targets.findIndex((t) => t.name === s.target)
  const rows = [...summaries]
    .sort((a, b) => a.workload.localeCompare(b.workload) || order(a) - order(b))
    .map((s) => [
      s.workload, s.target, `${s.runs - s.failedRuns}/${s.runs}`, rate(s.requestsPerSecond), rate(s.eventsPerSecond),
      s.eventsPerStream, ms(s.durationP50), mib(s.rssIdleBytes), mib(s.rssPeakBytes),
      s.cappedRuns > 0 ? `${s.cappedRuns} capped` : '',
    ])
  const headers = [
    'workload', 'target', 'runs ok', 'streams/s', 'events/s', 'events/stream', 'duration p50 ms', 'idle RSS',
    'peak RSS', 'note',
  ]
  return table(headers, rows, true)
}

export interface RunContext {
  command: string
  startedAt: Date
  minutes: number
  runs: number
  quick: boolean
  seed: number
  pinned: boolean
  machine: MachineInfo
  targets: readonly Target[]
  skipped: readonly { target: Target; missing: string[] }[]
  workloads: readonly Workload[]
  requestsFor: (workload: Workload) => number
  /** Warmup streams per cell (at least C). */
  warmup: number
}

export function resultsMarkdown(context: RunContext, summaries: readonly CellSummary[]): string {
  const m = context.machine
  const failures = summaries.filter((s) => s.failure !== undefined)
  return [
    '# End-to-end SSE benchmark: results',
    '',
    '> **Indicative only.** One machine, loopback, a synthetic upstream; the machine may have been shared with',
    '> other work while this ran (load average at the start is below). Compare targets within this file, not',
    '> with figures from another run. What each number means: [README.md](README.md).',
    '',
    `Generated ${context.startedAt.toISOString()} by \`${context.command}\` in ${context.minutes.toFixed(1)} min.`,
    '',
    '## Machine and versions',
    '',
    `- CPU: ${m.cpuModel}, ${m.cores} cores; memory ${m.memoryGiB} GiB; Linux ${m.kernel}; ` +
      `load average at start ${m.loadAverage}`,
    `- node ${m.node}, bun ${m.bun}, deno ${m.deno}, undici ${m.undici} (load generator), sluice ${m.sluiceCommit}`,
    `- ${context.pinned ? 'Pinned with taskset: target on CPU 0, test upstream + load generator on CPU 1.'
      : 'Not pinned (needs 2+ cores and taskset).'}`,
    `- ${context.runs} run(s) per cell${context.quick ? ' (--quick)' : ''}, median reported; cells in shuffled ` +
      `order (seed ${context.seed}); fresh upstream and target processes per cell; ` +
      `${context.warmup} warmup streams (at least C) before each, not measured.`,
    '',
    '## Workloads',
    '',
    ...context.workloads.map((w) => `- \`${w.name}\`: ${describeWorkload(w)}; ${context.requestsFor(w)} streams/run`),
    '',
    '## Against direct',
    '',
    'events/s: data events received per second over all streams. × direct: events/s ÷ direct\'s. TTFE: dispatch →',
    'first data event. Δ: TTFE minus direct\'s TTFE (the latency the proxy adds). RSS/stream: (peak − idle RSS of',
    'the target process) ÷ concurrent streams, shown for C ≥ 100 only.',
    '',
    ratioTable(summaries, context.workloads, context.targets, true),
    '',
    ...(disconnectTable(summaries, context.workloads, context.targets, true)
      ? ['## Client disconnect → upstream close', '',
        'Clients abort after K events; the delay is the test upstream\'s recorded close time minus the client\'s',
        'abort time (both epoch ms on the same host).', '',
        disconnectTable(summaries, context.workloads, context.targets, true), '']
      : []),
    '## Details',
    '',
    detailTable(summaries, context.targets),
    '',
    ...(context.skipped.length > 0
      ? ['## Skipped targets', '',
        ...context.skipped.map(({ target, missing }) => `- \`${target.name}\`: ${notAvailable(missing)}`),
        '']
      : []),
    ...(failures.length > 0
      ? ['## Failed runs', '', ...failures.map((s) => `- \`${s.target}\` ${s.workload}: ${oneLine(s.failure!)}`), '']
      : []),
  ].join('\n')
}

const oneLine = (text: string): string => text.replace(/\s+/g, ' ').slice(0, 300)

export const notAvailable = (missing: readonly string[]): string => `not available yet (${missing.join(', ')} missing)`

/**
 * Folds the runs of each (target, workload) cell into medians and compares every target with `direct`, the
 * same workload served by the upstream alone. Medians of runs, not means: one run disturbed by a neighbour on the
 * shared machine should not move the figure.
 * @module
 */
import type { CellResult } from './cell.ts'
import { ERROR_KINDS } from './loadgen.ts'
import type { ErrorKind } from './loadgen.ts'
import { median } from './percentiles.ts'

export interface CellSummary {
  target: string
  workload: string
  runs: number
  failedRuns: number
  /** Why runs failed (first message). */
  failure?: string
  eventsPerSecond: number
  requestsPerSecond: number
  ttfeP50: number
  ttfeP99: number
  durationP50: number
  rssIdleBytes: number
  rssPeakBytes: number
  rssPerStreamBytes: number
  disconnectP50: number
  disconnectMax: number
  neverClosed: number
  errors: Record<ErrorKind, number>
  unfinished: number
  cappedRuns: number
  /** Data events per completed stream, min–max over all runs. */
  eventsPerStream: string
}

export interface Comparison {
  /** events/s of the target ÷ events/s of direct. */
  throughputRatio: number
  /** TTFE of the target − TTFE of direct, ms. */
  ttfeOverheadP50: number
  ttfeOverheadP99: number
}

export function summarize(results: readonly CellResult[]): CellSummary[] {
  const groups = new Map<string, CellResult[]>()
  for (const result of results) {
    const key = `${result.target}\u0000${result.workload}`
    groups.set(key, [...(groups.get(key) ?? []), result])
  }
  return [...groups.values()].map((cells) => {
    const reports = cells.flatMap((cell) => (cell.report ? [cell.report] : []))
    const pick = (get: (report: (typeof reports)[number]) => number | undefined): number =>
      median(reports.map((report) => get(report) ?? Number.NaN))
    const errors = Object.fromEntries(ERROR_KINDS.map((kind) => [kind, 0])) as Record<ErrorKind, number>
    for (const report of reports) for (const kind of ERROR_KINDS) errors[kind] += report.errors[kind]
    const completedRuns = reports.filter((report) => report.completed > 0)
    const perStreamMin = Math.min(...completedRuns.map((report) => report.eventsPerStream.min))
    const perStreamMax = Math.max(...completedRuns.map((report) => report.eventsPerStream.max))
    const failure = cells.find((cell) => cell.error !== undefined)?.error
    return {
      target: cells[0]!.target,
      workload: cells[0]!.workload,
      runs: cells.length,
      failedRuns: cells.length - reports.length,
      ...(failure === undefined ? {} : { failure }),
      eventsPerSecond: pick((r) => r.eventsPerSecond),
      requestsPerSecond: pick((r) => r.requestsPerSecond),
      ttfeP50: pick((r) => r.ttfeMs.p50),
      ttfeP99: pick((r) => r.ttfeMs.p99),
      durationP50: pick((r) => r.durationMs.p50),
      rssIdleBytes: pick((r) => r.rss?.idleBytes),
      rssPeakBytes: pick((r) => r.rss?.peakBytes),
      rssPerStreamBytes: pick((r) => r.rss?.perActiveStreamBytes),
      disconnectP50: pick((r) => r.disconnectDelayMs?.p50),
      disconnectMax: Math.max(...reports.map((r) => r.disconnectDelayMs?.max ?? Number.NaN)),
      neverClosed: reports.reduce((sum, r) => sum + (r.disconnectDelayMs?.neverClosed ?? 0), 0),
      errors,
      unfinished: reports.reduce((sum, r) => sum + r.unfinished, 0),
      cappedRuns: reports.filter((r) => r.stoppedByCap).length,
      eventsPerStream: completedRuns.length === 0 ? '–'
        : perStreamMin === perStreamMax ? String(perStreamMin) : `${perStreamMin}–${perStreamMax}`,
    }
  })
}

export function compare(cell: CellSummary, direct: CellSummary | undefined): Comparison {
  if (!direct) return { throughputRatio: Number.NaN, ttfeOverheadP50: Number.NaN, ttfeOverheadP99: Number.NaN }
  return {
    throughputRatio: cell.eventsPerSecond / direct.eventsPerSecond,
    ttfeOverheadP50: cell.ttfeP50 - direct.ttfeP50,
    ttfeOverheadP99: cell.ttfeP99 - direct.ttfeP99,
  }
}

/** "none", or e.g. "truncated 3, timeout 1, 2 unfinished (cap)". */
export function errorText(cell: CellSummary): string {
  const parts = ERROR_KINDS.filter((kind) => cell.errors[kind] > 0).map((kind) => `${kind} ${cell.errors[kind]}`)
  if (cell.unfinished > 0) parts.push(`${cell.unfinished} unfinished (cap)`)
  if (cell.neverClosed > 0) parts.push(`${cell.neverClosed} never closed upstream`)
  if (cell.failedRuns > 0) parts.push(`${cell.failedRuns}/${cell.runs} runs failed`)
  return parts.length === 0 ? 'none' : parts.join(', ')
}

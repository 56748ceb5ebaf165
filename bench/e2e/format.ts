/** Plain-text rendering of one load report, for the CLI. */
import type { LoadReport } from './loadgen.ts'
import type { Distribution } from './percentiles.ts'

export const mib = (bytes: number): string => (Number.isFinite(bytes) ? `${(bytes / 2 ** 20).toFixed(1)} MiB` : '–')
export const kib = (bytes: number): string => (Number.isFinite(bytes) ? `${(bytes / 1024).toFixed(1)} KiB` : '–')
export const ms = (value: number): string => (Number.isFinite(value) ? value.toFixed(value < 10 ? 2 : 1) : '–')
export const rate = (value: number): string =>
  !Number.isFinite(value) ? '–' : value >= 1e4 ? `${(value / 1000).toFixed(1)}k` : value.toFixed(value < 10 ? 2 : 0)

const dist = (d: Distribution, withP90 = true): string =>
  `p50 ${ms(d.p50)}${withP90 ? ` p90 ${ms(d.p90)}` : ''} p99 ${ms(d.p99)} max ${ms(d.max)} ms (n=${d.count})`

export function formatReport(report: LoadReport): string {
  const errorTotal = Object.values(report.errors).reduce((sum, n) => sum + n, 0)
  const errorParts = Object.entries(report.errors)
    .filter(([, n]) => n > 0)
    .map(([kind, n]) => `${kind} ${n}`)
  const statuses = Object.entries(report.httpStatuses).map(([status, n]) => `${status}×${n}`)
  const capNote = report.stoppedByCap ? ' (stopped at the wall-clock cap)' : ''
  const statusNote = statuses.length > 0 ? ` [${statuses.join(' ')}]` : ''
  const lines = [
    `target      ${report.url}  C=${report.concurrency}  N=${report.requested}`,
    `streams     ${report.completed} completed, ${report.disconnected} disconnected on purpose, ` +
      `${errorTotal} failed, ${report.unfinished} unfinished${capNote}`,
    `throughput  ${rate(report.requestsPerSecond)} req/s, ${rate(report.eventsPerSecond)} events/s ` +
      `(${report.events} events in ${report.wallSeconds.toFixed(2)} s; ` +
      `${report.eventsPerStream.min}–${report.eventsPerStream.max} per completed stream)`,
    `TTFE        ${dist(report.ttfeMs)}`,
    `duration    ${dist(report.durationMs, false)}`,
    `errors      ${errorParts.length === 0 ? 'none' : errorParts.join(', ')}${statusNote}`,
  ]
  for (const [kind, sample] of Object.entries(report.errorSamples)) lines.push(`  ${kind}: ${sample}`)
  if (report.rss) {
    const r = report.rss
    lines.push(
      `target RSS  pid ${r.pid}: idle ${mib(r.idleBytes)}, peak ${mib(r.peakBytes)}, ` +
        `${kib(r.perActiveStreamBytes)} per active stream (${r.activeStreams} streams)`,
    )
  }
  const delays = report.disconnectDelayMs
  if (delays) {
    lines.push(
      `disconnect  client abort → upstream close: p50 ${ms(delays.p50)} max ${ms(delays.max)} ms ` +
        `(n=${delays.count}; ${delays.neverClosed} never closed at the upstream)`,
    )
  }
  return lines.join('\n')
}

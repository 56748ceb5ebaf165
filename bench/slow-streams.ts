/**
 * `node --import tsx bench/slow-streams.ts [--streams 10000] [--seconds 60] [--groups 10] [--target sluice]
 *   [--upstream-http2]`
 *
 * Holds many slow streams (one token per second, like a real LLM answer) open through the sluice binary at once
 * and reports: errors (must be 0), streams that were all open at the same time, the binary's RSS per active
 * stream (peak − idle), and its responsiveness during the hold: `GET /healthz` latency sampled every 200 ms
 * (a proxy for event-loop delay: the handler itself is a few µs). Nothing polls the upstream's records: in a first
 * version, reading 10 000 records every second stalled the upstream's own event loop.
 *
 * Process layout: the test upstream (--bench mode), the target, and `--groups` load-generator processes
 * (bench/loadgen.ts, streams/groups connections each), started 250 ms apart so 10 000 connections are not one
 * SYN storm against a 511-entry listen backlog. Every child runs under `ulimit -n <hard limit>`.
 *
 * File descriptors: an HTTP/1.1 proxy holds two sockets per stream (client + upstream), so N streams need
 * 2N + a few dozen descriptors in the target. `--upstream-http2` runs the test upstream as h2c and the binary with
 * `--upstream-http2`: one upstream connection per 100 streams (adapters/node/http2-pool.ts), so N + N/100 + a few
 * dozen. The script prints the hard limit and what N needs before starting.
 * @module
 */
import { spawnSync } from 'node:child_process'
import { parseArgs } from 'node:util'
import { STREAMS_PER_CONNECTION } from '../adapters/node/http2-pool.ts'
import { runtimeCommand } from '../test/_runtimes.ts'
import type { LoadReport } from './e2e/loadgen.ts'
import { distribution } from './e2e/percentiles.ts'
import { runToEnd, startService } from './e2e/processes.ts'
import type { Service } from './e2e/processes.ts'
import { idleRss, startRssSampler } from './e2e/rss-sampler.ts'

const { values } = parseArgs({
  options: {
    streams: { type: 'string', default: '10000' },
    seconds: { type: 'string', default: '60' },
    groups: { type: 'string', default: '10' },
    target: { type: 'string', default: 'sluice' },
    'upstream-http2': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h' },
  },
})
if (values.help) {
  console.log(
    'usage: node --import tsx bench/slow-streams.ts [--streams N] [--seconds S] [--groups G] [--target sluice|naive] ' +
      '[--upstream-http2]',
  )
  process.exit(0)
}
const http2 = values['upstream-http2'] === true
if (http2 && values.target !== 'sluice') {
  throw new Error('--upstream-http2 needs --target sluice (the naive proxy is HTTP/1.1)')
}
const streams = Number(values.streams)
const seconds = Number(values.seconds)
const groups = Math.min(Number(values.groups), streams)
if (!(streams > 0 && seconds > 0 && groups > 0)) throw new Error('--streams, --seconds and --groups must be > 0')

const hardLimit = Number(spawnSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).stdout.trim())
const fdLimit = Number.isFinite(hardLimit) ? hardLimit : 65_536
// A client socket per stream, plus an upstream socket per stream (HTTP/1.1) or per 100 streams (HTTP/2).
const needed = streams + (http2 ? Math.ceil(streams / STREAMS_PER_CONNECTION) : streams) + 64
console.log(
  `${streams} streams × ${seconds} s (1 token/s), ${groups} load generators, ` +
    `upstream ${http2 ? 'HTTP/2 (h2c)' : 'HTTP/1.1'}; ` +
    `fd hard limit ${fdLimit}, ` +
    `the target needs ≈ ${needed}${needed > fdLimit ? ' — MORE THAN ALLOWED: expect EMFILE failures' : ''}`,
)

/** argv run under the highest allowed open-file limit. */
const withFdLimit = (argv: readonly string[]): string[] => [
  'sh', '-c', `ulimit -n ${fdLimit} && exec "$@"`, 'sh', ...argv,
]
const http2Flag = http2 ? ['--upstream-http2'] : []
const TARGET_FLAGS = ['--port', '0', '--concurrency', String(streams + 1024), '--queue-timeout', '60s']

let upstream: Service | undefined
let target: Service | undefined
try {
  upstream = await startService({
    name: 'test upstream',
    argv: withFdLimit([...runtimeCommand('node', 'test/upstream/main.ts'), '--bench', ...(http2 ? ['--http2'] : [])]),
  })
  const targetArgv = values.target === 'naive'
    ? [...runtimeCommand('node', 'bench/naive-proxy.ts'), '--upstream', upstream.url, '--port', '0']
    : [process.execPath, 'adapters/node/bin.js', '--upstream', upstream.url, ...TARGET_FLAGS, ...http2Flag]
  target = await startService({
    name: values.target!,
    argv: withFdLimit(targetArgv),
    ignorePort: new URL(upstream.url).port,
  })
  // `sh -c … exec` keeps the pid: the target process is the one we spawned.
  const pid = target.pid
  const origin = new URL(target.url).origin
  // Warm the JIT with a few quick streams, then read the idle RSS.
  await loadgen(origin, 20, 200, 'mock?chunks=50', 60)
  await new Promise((resolve) => setTimeout(resolve, 500))
  const idle = await idleRss(pid)
  const sampler = startRssSampler(pid, 200)
  const probe = startHealthProbe(origin)
  const perGroup = Math.ceil(streams / groups)
  const model = `mock?chunks=${seconds}&delay=1000`
  const runs: Promise<LoadReport | string>[] = []
  for (let group = 0; group < groups; group++) {
    const count = Math.min(perGroup, streams - group * perGroup)
    if (count <= 0) break
    runs.push(loadgen(origin, count, count, model, seconds + 60))
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
  const reports = await Promise.all(runs)
  sampler.stop()
  const lag = probe.stop()
  const failures = reports.filter((report): report is string => typeof report === 'string')
  const done = reports.filter((report): report is LoadReport => typeof report !== 'string')
  const errors: Record<string, number> = {}
  for (const report of done) {
    for (const [kind, count] of Object.entries(report.errors)) errors[kind] = (errors[kind] ?? 0) + count
  }
  const errorCount = Object.values(errors).reduce((sum, count) => sum + count, 0) + failures.length
  const completed = done.reduce((sum, report) => sum + report.completed, 0)
  const samples = done.flatMap((report) => Object.entries(report.errorSamples).map(([kind, text]) => `${kind}: ${text}`))
  const perStream = (sampler.peak - idle) / streams
  console.log(`completed ${completed}/${streams}; errors ${errorCount} ${JSON.stringify(errors)}`)
  if (samples.length > 0) console.log(`  first errors: ${[...new Set(samples)].slice(0, 4).join(' | ')}`)
  for (const failure of failures) console.log(`  load generator failed: ${failure}`)
  // All streams overlap when every one started within the ramp + its first token: TTFE says whether they did.
  const ttfe = done.map((report) => report.ttfeMs)
  const durations = done.map((report) => report.durationMs)
  console.log(
    `TTFE worst group p50 ${Math.max(...ttfe.map((d) => d.p50)).toFixed(0)} ms, p99 ` +
      `${Math.max(...ttfe.map((d) => d.p99)).toFixed(0)} ms; stream duration max ` +
      `${Math.max(...durations.map((d) => d.max)).toFixed(0)} ms (${seconds} tokens at 1/s)`,
  )
  console.log(
    `${values.target} RSS idle ${mib(idle)}, peak ${mib(sampler.peak)} → ${(perStream / 1024).toFixed(1)} KiB per stream`,
  )
  console.log(
    `GET /healthz during the hold (${lag.count} probes): p50 ${lag.p50.toFixed(1)} ms, p99 ${lag.p99.toFixed(1)} ms, ` +
      `max ${lag.max.toFixed(1)} ms, failed ${lag.failed}`,
  )
  if (lag.peakActive !== undefined) {
    const all = lag.peakActive >= streams
    console.log(
      `peak active streams (sampled /healthz): ${lag.peakActive} of ${streams}` +
        (all ? ' — all open at the same moment' : ' — NOT all open at once (raise --seconds above the set-up time)'),
    )
  }
  process.exitCode = errorCount === 0 && completed === streams ? 0 : 1
} finally {
  await target?.stop()
  await upstream?.stop()
}

async function loadgen(
  origin: string,
  concurrency: number,
  requests: number,
  model: string,
  maxSeconds: number,
): Promise<LoadReport | string> {
  const argv = withFdLimit([
    ...runtimeCommand('node', 'bench/loadgen.ts'),
    '--json', '--url', origin, '--concurrency', String(concurrency), '--requests', String(requests),
    '--model', model, '--max-seconds', String(maxSeconds), '--timeout-ms', '60000',
  ])
  const run = await runToEnd(argv, undefined, (maxSeconds + 60) * 1000)
  const line = run.stdout.trim().split('\n').at(-1) ?? ''
  if (run.code !== 0 || !line.startsWith('{')) return `exit ${run.code}: ${(run.stderr || run.stdout).trim().slice(-300)}`
  return JSON.parse(line) as LoadReport
}

/** Latency of `GET /healthz` every 200 ms: how long the target's event loop takes to get to a new request. */
/**
 * Samples `GET /healthz` every 200 ms: its latency (event-loop delay) and the gateway's `active` count, whose peak
 * says whether all streams were open at the same moment (the naive proxy has no /healthz: no peak).
 */
function startHealthProbe(
  origin: string,
): { stop(): ReturnType<typeof distribution> & { failed: number; peakActive: number | undefined } } {
  const latencies: number[] = []
  let failed = 0
  let peakActive: number | undefined
  let stopped = false
  void (async () => {
    while (!stopped) {
      const started = performance.now()
      try {
        const response = await fetch(`${origin}/healthz`, { signal: AbortSignal.timeout(10_000) })
        const text = await response.text()
        latencies.push(performance.now() - started)
        const active = activeOf(text)
        if (active !== undefined) peakActive = Math.max(peakActive ?? 0, active)
      } catch {
        failed++
      }
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
  })()
  return {
    stop() {
      stopped = true
      return { ...distribution(latencies), failed, peakActive }
    },
  }
}

function activeOf(text: string): number | undefined {
  try {
    const active = (JSON.parse(text) as { active?: unknown }).active
    return typeof active === 'number' ? active : undefined
  } catch {
    return undefined
  }
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`
}


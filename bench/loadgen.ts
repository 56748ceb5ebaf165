/**
 * CLI of the SSE load generator (the module is bench/e2e/loadgen.ts):
 *
 *   node --import tsx bench/loadgen.ts --url http://127.0.0.1:8080 -c 100 -n 1000 --max-seconds 30 \
 *     [--model 'mock?chunks=50&delay=20'] [--target-pid PID] [--disconnect-after K] [--json]
 *
 * With --disconnect-after K every client leaves after K events; add --upstream-records <test upstream URL> to
 * measure when the upstream saw each connection close (its GET /__upstream/requests records).
 * Prints a summary, or with --json the full report as one JSON line (what bench/e2e.ts reads). Exits 2 on bad
 * arguments, 0 otherwise: failed streams are results, not crashes.
 * @module
 */
import { parseArgs } from 'node:util'
import { disconnectDelays, idFromModel, withRequestIds } from './e2e/disconnect-delays.ts'
import { formatReport } from './e2e/format.ts'
import { runLoad } from './e2e/loadgen.ts'

const USAGE = `usage: loadgen --url URL [-c C] [-n N] [--max-seconds S] [--model M] [--path P]
               [--warmup N [--warmup-model M]] [--target-pid PID] [--timeout-ms MS] [--json]
               [--disconnect-after K [--upstream-records UPSTREAM_URL]]
  --model             the request's model string; {i} becomes the request index (default: mock)
  --warmup            run N unmeasured streams first (then read the target's idle RSS)
  --upstream-records  with --disconnect-after: read the test upstream's records to time abort → upstream close
                      (adds id=d{i} to the model unless it already has {i})`

function number(name: string, value: string | undefined, fallback?: number): number | undefined {
  if (value === undefined) return fallback
  const parsed = Number(value)
  if (!Number.isFinite(parsed) || parsed < 0) throw new Error(`--${name} must be a non-negative number, got ${value}`)
  return parsed
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      url: { type: 'string' },
      path: { type: 'string' },
      concurrency: { type: 'string', short: 'c' },
      requests: { type: 'string', short: 'n' },
      'max-seconds': { type: 'string' },
      model: { type: 'string' },
      'target-pid': { type: 'string' },
      'disconnect-after': { type: 'string' },
      'timeout-ms': { type: 'string' },
      warmup: { type: 'string' },
      'warmup-model': { type: 'string' },
      'upstream-records': { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help || !values.url) {
    console.error(USAGE)
    process.exitCode = values.help ? 0 : 2
    return
  }
  const disconnectAfterEvents = number('disconnect-after', values['disconnect-after'])
  const recordsUrl = values['upstream-records']
  if (recordsUrl !== undefined && disconnectAfterEvents === undefined) {
    throw new Error('--upstream-records only makes sense with --disconnect-after')
  }
  const model = recordsUrl === undefined ? (values.model ?? 'mock') : withRequestIds(values.model ?? 'mock')
  const report = await runLoad({
    url: values.url,
    path: values.path,
    concurrency: number('concurrency', values.concurrency, 10)!,
    requests: number('requests', values.requests, 100)!,
    maxSeconds: number('max-seconds', values['max-seconds'], 60)!,
    model,
    targetPid: number('target-pid', values['target-pid']),
    disconnectAfterEvents,
    timeoutMs: number('timeout-ms', values['timeout-ms']),
    warmupRequests: number('warmup', values.warmup),
    warmupModel: values['warmup-model'],
  })
  if (recordsUrl !== undefined) {
    const idFor = (index: number): string => idFromModel(model.replaceAll('{i}', String(index))) ?? ''
    report.disconnectDelayMs = await disconnectDelays(recordsUrl, report.disconnects, idFor)
  }
  console.log(values.json ? JSON.stringify(report) : formatReport(report))
}

main(process.argv.slice(2)).catch((error: unknown) => {
  console.error(`loadgen: ${error instanceof Error ? error.message : String(error)}\n${USAGE}`)
  process.exitCode = 2
})

/**
 * One measurement: a fresh test upstream, a fresh target in front of it, one load-generator process, then
 * everything stopped. Fresh processes per cell keep cells independent: no RSS, JIT state or upstream request
 * records (the test upstream keeps every request) carried from one cell into the next.
 * Pinning on a 2-core machine: upstream + load generator on CPU 1, the target on CPU 0.
 * @module
 */
import { runtimeCommand } from '../../test/_runtimes.ts'
import type { LoadReport } from './loadgen.ts'
import { runToEnd, startService } from './processes.ts'
import type { Service } from './processes.ts'
import type { Target } from './targets.ts'
import { modelFor } from './workloads.ts'
import type { Workload } from './workloads.ts'

export interface CellSpec {
  target: Target
  workload: Workload
  run: number
  requests: number
  maxSeconds: number
  pin: boolean
  /** Warmup streams before measuring (at least C of them). */
  warmup: number
}

export interface CellResult {
  target: string
  workload: string
  run: number
  /** Undefined when the cell could not run; `error` says why. */
  report?: LoadReport
  error?: string
  seconds: number
}

const TARGET_CPU = 0
const LOAD_CPU = 1
/** Warmup streams carry no inter-token delay, so warming a C=1 cell costs milliseconds, not a minute. */
const WARMUP_MODEL = 'mock?chunks=50'

export async function runCell(spec: CellSpec): Promise<CellResult> {
  const startedAt = performance.now()
  const { target, workload } = spec
  const result = (fields: Partial<CellResult>): CellResult => ({
    target: target.name,
    workload: workload.name,
    run: spec.run,
    seconds: (performance.now() - startedAt) / 1000,
    ...fields,
  })
  let upstream: Service | undefined
  let gateway: Service | undefined
  try {
    upstream = await startService({
      name: 'test upstream',
      // --bench: precomputed event bytes and capped records, so direct's ceiling is the client's, not the upstream's.
      argv: [...runtimeCommand('node', 'test/upstream/main.ts'), '--bench'],
      cpu: spec.pin ? LOAD_CPU : undefined,
    })
    if (target.command) {
      gateway = await startService({
        name: target.name,
        argv: target.command(upstream.url),
        cpu: spec.pin ? TARGET_CPU : undefined,
        ignorePort: new URL(upstream.url).port,
      })
    }
    // At least C warmup streams, so all C client connections are open before measuring (see runLoad).
    const warmup = Math.max(spec.warmup, workload.concurrency)
    const argv = [
      ...runtimeCommand('node', 'bench/loadgen.ts'),
      '--json',
      '--url', new URL((gateway ?? upstream).url).origin,
      '--concurrency', String(workload.concurrency),
      '--requests', String(spec.requests),
      '--max-seconds', String(spec.maxSeconds),
      '--model', modelFor(workload),
      '--warmup', String(warmup),
      '--warmup-model', WARMUP_MODEL,
    ]
    if (gateway) argv.push('--target-pid', String(gateway.pid))
    if (workload.disconnectAfter !== undefined) {
      argv.push('--disconnect-after', String(workload.disconnectAfter), '--upstream-records', upstream.url)
    }
    // The loadgen stops itself at --max-seconds; the kill is for a wedged process (startup + warmup + margin).
    const run = await runToEnd(argv, spec.pin ? LOAD_CPU : undefined, (spec.maxSeconds + 60) * 1000)
    const line = run.stdout.trim().split('\n').at(-1) ?? ''
    if (run.code !== 0 || !line.startsWith('{')) {
      return result({ error: `load generator exit ${run.code}: ${(run.stderr || run.stdout).trim().slice(-500)}` })
    }
    return result({ report: JSON.parse(line) as LoadReport })
  } catch (error) {
    return result({ error: error instanceof Error ? error.message.slice(0, 800) : String(error) })
  } finally {
    await gateway?.stop()
    await upstream?.stop()
  }
}

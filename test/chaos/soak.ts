/**
 * The chaos soak from the command line (`npm run soak -- …`): runs for as long as asked and prints the tally.
 *
 *   npm run soak -- --duration 10m [--workers 2] [--seed N] [--concurrency 16] [--clients 24] [--streams N]
 *                   [--queue-timeout 2s] [--idle-timeout 1s] [--retries 2] [--json]
 *
 * Exit code 0 when every stream got what its fault must produce and nothing leaked; 1 otherwise; 2 on bad flags.
 * Everything runs on loopback: the test upstream in this process, the `sluice` binary as a child (build it
 * first: `npm run build`).
 */
import { parseArgs } from 'node:util'
import { parseDuration } from '../../core/units.ts'
import { workersSupported } from './binary.ts'
import { randomSeed } from './rng.ts'
import { formatReport, runSoak, soakPassed } from './run-soak.ts'

const USAGE = `usage: npm run soak -- [--duration 2m] [--streams N] [--workers 0] [--seed N] [--concurrency 16]
                       [--clients 24] [--queue-timeout 2s] [--idle-timeout 1s] [--retries 2] [--json]`

function integer(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback
  if (!/^\d+$/.test(text)) throw new Error(`--${name} must be a non-negative integer, got ${text}`)
  return Number(text)
}

async function main(): Promise<number> {
  let values
  try {
    values = parseArgs({
      options: {
        duration: { type: 'string' },
        streams: { type: 'string' },
        workers: { type: 'string' },
        seed: { type: 'string' },
        concurrency: { type: 'string' },
        clients: { type: 'string' },
        'queue-timeout': { type: 'string' },
        'idle-timeout': { type: 'string' },
        retries: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values
  } catch (error) {
    console.error(`${(error as Error).message}\n${USAGE}`)
    return 2
  }
  if (values.help) {
    console.log(USAGE)
    return 0
  }
  let options
  try {
    const durationMs = values.duration === undefined ? undefined : parseDuration('duration', values.duration)
    const streams = values.streams === undefined ? undefined : integer('streams', values.streams, 0)
    options = {
      seed: integer('seed', values.seed, randomSeed()),
      // Neither given: a two-minute run.
      ...(durationMs === undefined && streams === undefined ? { durationMs: 120_000 } : {}),
      ...(durationMs === undefined ? {} : { durationMs }),
      ...(streams === undefined ? {} : { streams }),
      workers: integer('workers', values.workers, 0),
      concurrency: integer('concurrency', values.concurrency, 16),
      lanes: integer('clients', values.clients, 24),
      queueTimeoutMs: parseDuration('queue-timeout', values['queue-timeout'] ?? '2s'),
      idleTimeoutMs: parseDuration('idle-timeout', values['idle-timeout'] ?? '1s'),
      retries: integer('retries', values.retries, 2),
      warmupStreams: 300,
    }
  } catch (error) {
    console.error(`${(error as Error).message}\n${USAGE}`)
    return 2
  }
  if (options.workers > 0) {
    const probe = await workersSupported(options.workers)
    if (!probe.supported) {
      console.error(`sluice --workers ${options.workers} does not run in this build: ${probe.reason}`)
      return 1
    }
  }
  console.log(
    `chaos soak: seed ${options.seed}, ${
      options.durationMs === undefined ? `${options.streams} streams` : `${Math.round(options.durationMs / 1000)} s`
    }, workers ${options.workers}`,
  )
  const report = await runSoak({ ...options, log: (line) => console.log(line) })
  console.log(values.json ? JSON.stringify(report) : formatReport(report))
  return soakPassed(report) ? 0 : 1
}

process.exitCode = await main()

/**
 * What the end-to-end benchmark measures: one row per way of serving the same upstream. Adding a target is adding
 * a row: the files it needs (missing → skipped with "not available yet") and the argv that starts it given the
 * upstream base URL. A target process must print the URL it listens on (a `LISTENING <url>` line or any banner
 * containing it) and serve OpenAI's `POST /v1/chat/completions`.
 * @module
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { runtimeCommand } from '../../test/_runtimes.ts'
import { ROOT } from './processes.ts'

export interface Target {
  name: string
  description: string
  /** Files (from the repo root) that must exist for the target to run. */
  requires: string[]
  /** argv to start the target in front of `upstream` (base URL with /v1); undefined: talk to the upstream itself. */
  command?: (upstream: string) => string[]
}

/** sluice must not be the bottleneck by configuration: its permits exceed the largest C the bench uses. */
const SLUICE_FLAGS = ['--port', '0', '--concurrency', '4096', '--queue-timeout', '30s']
const SLUICE_NODE = ['adapters/node/bin.js', 'adapters/node/cli.ts', 'dist/adapters/node/cli.js']

export const TARGETS: readonly Target[] = [
  {
    name: 'direct',
    description: 'straight to the test upstream: the physical limit',
    requires: ['test/upstream/main.ts'],
  },
  {
    name: 'naive',
    description: 'bench/naive-proxy.ts: node:http + fetch + Readable.fromWeb(body) piped to the response',
    requires: ['bench/naive-proxy.ts'],
    command: (upstream) => [...runtimeCommand('node', 'bench/naive-proxy.ts'), '--upstream', upstream, '--port', '0'],
  },
  {
    name: 'sluice',
    description: 'sluice binary on Node, streams in-process',
    requires: SLUICE_NODE,
    command: (upstream) => [process.execPath, 'adapters/node/bin.js', '--upstream', upstream, ...SLUICE_FLAGS],
  },
  {
    name: 'sluice-fetch',
    description: 'sluice binary on Node, in-process, calling the upstream with the global fetch (--upstream-client fetch)',
    requires: SLUICE_NODE,
    command: (upstream) => [
      process.execPath, 'adapters/node/bin.js', '--upstream', upstream, ...SLUICE_FLAGS, '--upstream-client', 'fetch',
    ],
  },
  {
    name: 'sluice-workers',
    description: 'sluice binary on Node, upstream streams in 2 worker threads',
    requires: SLUICE_NODE,
    command: (upstream) => [
      process.execPath, 'adapters/node/bin.js', '--upstream', upstream, ...SLUICE_FLAGS, '--workers', '2',
    ],
  },
  {
    name: 'sluice-bun',
    description: 'examples/bun-gateway.ts: the gateway on the Bun adapter',
    requires: ['examples/bun-gateway.ts', 'adapters/bun/mod.ts'],
    // Bun's fetch runs 256 requests at once unless this is set at startup (examples/bun-gateway.ts says more).
    command: (upstream) => [
      'env', 'BUN_CONFIG_MAX_HTTP_REQUESTS=4096',
      ...runtimeCommand('bun', 'examples/bun-gateway.ts'), '--upstream', upstream, ...SLUICE_FLAGS,
    ],
  },
  {
    name: 'sluice-deno',
    description: 'examples/deno-gateway.ts: the gateway on the Deno adapter',
    requires: ['examples/deno-gateway.ts', 'adapters/deno/mod.ts'],
    command: (upstream) => [
      ...runtimeCommand('deno', 'examples/deno-gateway.ts'), '--upstream', upstream, ...SLUICE_FLAGS,
    ],
  },
]

/** The files a target still lacks (empty: it can run). */
export function missingFiles(target: Target): string[] {
  return target.requires.filter((file) => !existsSync(join(ROOT, file)))
}

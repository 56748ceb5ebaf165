/**
 * Runs scenario scripts under real `node`, `bun` and `deno` processes and reads their JSON verdict, so every
 * cross-runtime claim is tested on all three runtimes from one vitest run. bun and deno come from npm
 * (devDependencies), so nothing else needs installing.
 *
 * A scenario script imports `report()` from `./scenarios/_verdict.ts` and calls it once; the verdict is the
 * last stdout line that starts with VERDICT_PREFIX. Anything else the script prints is kept for diagnostics.
 */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { VERDICT_PREFIX } from './scenarios/_verdict.ts'

export const RUNTIMES = ['node', 'bun', 'deno'] as const
export type Runtime = (typeof RUNTIMES)[number]

export const ROOT = fileURLToPath(new URL('..', import.meta.url))
const BIN = (name: string): string => fileURLToPath(new URL(`../node_modules/.bin/${name}`, import.meta.url))

/** The argv that runs a TypeScript file under `runtime` with network/file/env access. */
export function runtimeCommand(runtime: Runtime, script: string, extraRuntimeFlags: string[] = []): string[] {
  switch (runtime) {
    // Node 20 cannot strip types: tsx's loader compiles on the fly (tests only; users run dist/).
    case 'node':
      return [process.execPath, '--import', 'tsx', ...extraRuntimeFlags, script]
    case 'bun':
      return [BIN('bun'), 'run', ...extraRuntimeFlags, script]
    // -A: the scenarios open sockets, spawn workers and read env. --no-prompt: never block on a permission prompt.
    case 'deno':
      return [BIN('deno'), 'run', '-A', '--no-prompt', ...extraRuntimeFlags, script]
  }
}

export interface ScenarioResult<V> {
  verdict: V
  stdout: string
  stderr: string
  exitCode: number | null
  signal: NodeJS.Signals | null
}

export interface RunScenarioOptions {
  args?: string[]
  env?: Record<string, string>
  timeoutMs?: number
  runtimeFlags?: string[]
}

/** Runs `script` (path relative to the repo root or absolute) under `runtime` and returns its verdict. */
export function runScenario<V = Record<string, unknown>>(
  runtime: Runtime,
  script: string,
  { args = [], env = {}, timeoutMs = 45_000, runtimeFlags = [] }: RunScenarioOptions = {},
): Promise<ScenarioResult<V>> {
  const scriptPath = script.startsWith('/') ? script : `${ROOT}${script}`
  const [command, ...argv] = runtimeCommand(runtime, scriptPath, runtimeFlags)
  return new Promise((resolve, reject) => {
    const child = spawn(command!, [...argv, ...args], {
      cwd: ROOT,
      env: { ...process.env, NO_COLOR: '1', DENO_NO_UPDATE_CHECK: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (data: string) => (stdout += data))
    child.stderr.setEncoding('utf8').on('data', (data: string) => (stderr += data))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('error', (error) => {
      clearTimeout(timer)
      reject(error)
    })
    child.on('close', (exitCode, signal) => {
      clearTimeout(timer)
      const line = stdout
        .split('\n')
        .reverse()
        .find((l) => l.startsWith(VERDICT_PREFIX))
      if (!line) {
        const how = signal === 'SIGKILL' ? `killed after ${timeoutMs} ms` : `exit ${exitCode ?? signal}`
        reject(new Error(`${runtime} ${script}: no verdict (${how})\n--- stdout\n${stdout}\n--- stderr\n${stderr}`))
        return
      }
      resolve({ verdict: JSON.parse(line.slice(VERDICT_PREFIX.length)) as V, stdout, stderr, exitCode, signal })
    })
  })
}

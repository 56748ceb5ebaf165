/**
 * Starts the benchmark's processes (upstream, gateway under test, load generator), optionally pinned to one CPU
 * with `taskset`, and guarantees they die: every child gets a stdin pipe (the test upstream and the naive proxy
 * exit when it closes), is killed by pid on stop, and any still alive when the runner exits or is interrupted is
 * SIGKILLed by pid.
 * @module
 */
import { spawn, spawnSync } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))

const live = new Set<ChildProcess>()
let cleanupInstalled = false

function installCleanup(): void {
  if (cleanupInstalled) return
  cleanupInstalled = true
  const killAll = (): void => {
    for (const child of live) if (child.pid !== undefined && child.exitCode === null) child.kill('SIGKILL')
  }
  process.on('exit', killAll)
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      killAll()
      process.exit(130)
    })
  }
}

let tasksetAvailable: boolean | undefined
export function canPin(): boolean {
  tasksetAvailable ??= spawnSync('taskset', ['-c', '0', 'true']).status === 0
  return tasksetAvailable
}

/** argv prefixed with `taskset -c <cpu>` when pinning is asked for and possible. */
export function pinned(argv: readonly string[], cpu: number | undefined): string[] {
  return cpu === undefined || !canPin() ? [...argv] : ['taskset', '-c', String(cpu), ...argv]
}

export interface Service {
  name: string
  pid: number
  /** The first http(s) URL the process printed (other than `ignorePort`'s), with its path. */
  url: string
  /** Last few KiB of stdout + stderr, for error messages. */
  output(): string
  stop(): Promise<void>
}

export interface StartOptions {
  name: string
  argv: readonly string[]
  cpu?: number
  /** A URL on this port in the banner is not ours (a gateway's banner may also print its upstream URL). */
  ignorePort?: string
  readyTimeoutMs?: number
  env?: Record<string, string>
}

const URL_PATTERN = /\bhttps?:\/\/[^\s"'<>`,)]+/g

/** Starts a server process and resolves once it has printed the URL it listens on. */
export function startService(options: StartOptions): Promise<Service> {
  installCleanup()
  const [command, ...args] = pinned(options.argv, options.cpu)
  const child = spawn(command!, args, {
    cwd: ROOT,
    env: { ...process.env, NO_COLOR: '1', DENO_NO_UPDATE_CHECK: '1', ...options.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  live.add(child)
  let output = ''
  const keep = (text: string): void => {
    output = (output + text).slice(-4096)
  }
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()))
  exited.then(() => live.delete(child), () => {})

  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.stdin?.end()
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 3_000)
    await exited
    clearTimeout(timer)
  }

  return new Promise<Service>((resolve, reject) => {
    const readyTimeoutMs = options.readyTimeoutMs ?? 20_000
    let settled = false
    let stdoutText = ''
    const fail = (why: string): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      void stop().then(() => reject(new Error(`${options.name}: ${why}\n${output.trim()}`)))
    }
    const timer = setTimeout(() => fail(`printed no URL within ${readyTimeoutMs} ms`), readyTimeoutMs)
    child.on('error', (error) => fail(error.message))
    child.once('close', (code, signal) => fail(`exited (${code ?? signal}) before printing its URL`))
    child.stderr!.setEncoding('utf8').on('data', keep)
    child.stdout!.setEncoding('utf8').on('data', (text: string) => {
      keep(text)
      if (settled) return
      stdoutText += text
      // Only complete lines: a URL cut by a pipe chunk boundary would parse as a wrong port.
      const complete = stdoutText.slice(0, stdoutText.lastIndexOf('\n') + 1)
      const url = [...complete.matchAll(URL_PATTERN)]
        .map((match) => match[0].replace(/[.:;]+$/, ''))
        .find((found) => new URL(found).port !== options.ignorePort)
      if (url === undefined) return
      settled = true
      clearTimeout(timer)
      resolve({ name: options.name, pid: child.pid!, url, output: () => output, stop })
    })
  })
}

export interface RunResult {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs a command to completion (the load generator), SIGKILLed after `timeoutMs`. */
export function runToEnd(argv: readonly string[], cpu: number | undefined, timeoutMs: number): Promise<RunResult> {
  installCleanup()
  const [command, ...args] = pinned(argv, cpu)
  const child = spawn(command!, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  live.add(child)
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text))
  child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr = (stderr + text).slice(-8192)))
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  return new Promise((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      live.delete(child)
      resolve({ code, stdout, stderr })
    })
  })
}

/**
 * The real `sluice` binary (adapters/node/bin.js → dist/) as a child process: started with flags, its banner URL
 * read, every stdout line (the JSON access log) and all stderr kept, and /proc readings (RSS, open fds) taken by
 * pid. The soft fd limit is raised to the hard one for the child (`ulimit -n` in a shell that then `exec`s node),
 * so 10 000 idle connections are possible where the hard limit allows them.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
/** The binary to run; SLUICE_CHAOS_BIN points the soak at another build (a worktree of an older commit). */
export const BIN = process.env.SLUICE_CHAOS_BIN ?? `${ROOT}adapters/node/bin.js`
/** The env var the binary reads the upstream key from (`--upstream-key-env`). */
export const KEY_ENV = 'SLUICE_CHAOS_UPSTREAM_KEY'

export interface ExitStatus {
  code: number | null
  signal: NodeJS.Signals | null
}

export interface BinaryOptions {
  /** Flags after `--port 0` (the upstream, concurrency, timeouts…). */
  args: string[]
  /** The upstream key, passed through `KEY_ENV`. */
  upstreamKey?: string
  /** Node/V8 flags for the binary's process (e.g. GC stress: `--gc-interval=…`, not allowed in NODE_OPTIONS). */
  nodeFlags?: string[]
  /** Called with every stdout line after the banner, as it arrives (access-log lines). */
  onLine?: (line: string) => void
  /** Keep stdout lines in `lines` (default true; a long soak only streams them through `onLine`). */
  keepLines?: boolean
  readyTimeoutMs?: number
}

export interface Binary {
  readonly url: string
  readonly pid: number
  readonly child: ChildProcess
  /** stdout lines after the banner (empty when `keepLines` is false). */
  readonly lines: string[]
  stderr(): string
  /** All stdout text seen, banner included, when `keepLines`; for leak scans. */
  stdout(): string
  readonly exited: Promise<ExitStatus>
  alive(): boolean
  /** Resident set size in bytes, from /proc/<pid>/status VmRSS. */
  rss(): number
  /** Open file descriptors (sockets included), from /proc/<pid>/fd. */
  fds(): number
  /** Resolves with the first stderr text matching `pattern` (past or future). */
  waitForStderr(pattern: RegExp, timeoutMs?: number): Promise<void>
  /** Sends `signal`, SIGKILLs after `graceMs`, resolves with the exit status. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<ExitStatus>
}

const running = new Set<ChildProcess>()
// A test that throws must not leave a gateway behind.
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL')
})

export async function startBinary(options: BinaryOptions): Promise<Binary> {
  const { args, upstreamKey, onLine, keepLines = true, readyTimeoutMs = 20_000, nodeFlags = [] } = options
  const argv = [...nodeFlags, BIN, '--port', '0', '--upstream-key-env', KEY_ENV, ...args]
  // `exec` keeps the pid: the shell becomes node, so /proc/<pid> and signals reach the gateway itself.
  const script = 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@"'
  const child = spawn('sh', ['-c', script, process.execPath, ...argv], {
    cwd: ROOT,
    env: { ...process.env, [KEY_ENV]: upstreamKey ?? '', NODE_OPTIONS: process.env.SLUICE_CHAOS_NODE_OPTIONS ?? '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  running.add(child)
  const lines: string[] = []
  let stdoutText = ''
  let stderrText = ''
  let partial = ''
  let url: string | undefined
  const stderrWaiters = new Set<() => void>()
  let onReady: ((url: string) => void) | undefined
  child.stdout!.setEncoding('utf8').on('data', (data: string) => {
    if (keepLines) stdoutText += data
    const parts = (partial + data).split('\n')
    partial = parts.pop()!
    for (const line of parts) {
      if (url === undefined) {
        const match = /listening on (\S+)/.exec(line)
        if (match) {
          url = match[1]!
          onReady?.(url)
        }
        continue
      }
      if (line.startsWith('  ') || line === '' || line === 'Try it:') continue
      if (keepLines) lines.push(line)
      onLine?.(line)
    }
  })
  child.stderr!.setEncoding('utf8').on('data', (data: string) => {
    stderrText += data
    for (const waiter of [...stderrWaiters]) waiter()
  })
  const exited = new Promise<ExitStatus>((resolve) => {
    child.once('exit', (code, signal) => {
      running.delete(child)
      for (const waiter of [...stderrWaiters]) waiter()
      resolve({ code, signal })
    })
  })
  const describe = (): string => `sluice ${args.join(' ')}\n--- stderr\n${stderrText}`

  const ready = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no banner in ${readyTimeoutMs} ms: ${describe()}`)),
      readyTimeoutMs,
    )
    onReady = (value) => {
      clearTimeout(timer)
      resolve(value)
    }
    void exited.then((status) => {
      clearTimeout(timer)
      reject(new BinaryExitedError(status, stderrText))
    })
  }).catch((error: unknown) => {
    child.kill('SIGKILL')
    throw error
  })

  const pid = child.pid!
  const alive = (): boolean => child.exitCode === null && child.signalCode === null
  return {
    url: ready,
    pid,
    child,
    lines,
    stderr: () => stderrText,
    stdout: () => stdoutText,
    exited,
    alive,
    rss: () => readRss(pid),
    fds: () => readdirSync(`/proc/${pid}/fd`).length,
    waitForStderr(pattern, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if (pattern.test(stderrText)) finish()
          else if (!alive()) finish(new Error(`exited before stderr matched ${pattern}: ${describe()}`))
        }
        const finish = (error?: Error): void => {
          clearTimeout(timer)
          stderrWaiters.delete(check)
          if (error) reject(error)
          else resolve()
        }
        const timer = setTimeout(
          () => finish(new Error(`stderr did not match ${pattern} in ${timeoutMs} ms`)),
          timeoutMs,
        )
        stderrWaiters.add(check)
        check()
      })
    },
    async stop(signal = 'SIGTERM', graceMs = 10_000) {
      if (alive()) {
        child.kill(signal)
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
        await exited
        clearTimeout(timer)
      }
      return exited
    },
  }
}

/** The binary exited before printing its banner (e.g. exit 2 for a flag this build does not support). */
export class BinaryExitedError extends Error {
  readonly status: ExitStatus
  readonly stderr: string
  constructor(status: ExitStatus, stderr: string) {
    super(`sluice exited (${status.code ?? status.signal}) before listening: ${stderr.trim()}`)
    this.status = status
    this.stderr = stderr
  }
}

export function readRss(pid: number): number {
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  if (!match) throw new Error(`no VmRSS for pid ${pid}`)
  return Number(match[1]) * 1024
}

/**
 * Whether this build runs `--workers N`: the worker pool is wired by another change; until then the binary
 * refuses the flag with exit 2. Probed by starting it (against a closed port: nothing is called) and stopping it.
 */
export async function workersSupported(workers: number): Promise<{ supported: boolean; reason: string }> {
  try {
    const binary = await startBinary({ args: ['--upstream', 'http://127.0.0.1:9/v1', '--workers', String(workers)] })
    await binary.stop('SIGKILL')
    return { supported: true, reason: '' }
  } catch (error) {
    if (error instanceof BinaryExitedError) return { supported: false, reason: oneLine(error.stderr) }
    throw error
  }
}

/** The line of a refusal that says why (`sluice: Invalid --workers …`, or an uncaught error's message). */
function oneLine(stderr: string): string {
  const lines = stderr.split('\n').map((line) => line.trim()).filter(Boolean)
  return lines.find((line) => /^(sluice: |\w*Error: )/.test(line)) ?? lines.at(-1) ?? 'no reason given'
}

/** Sum of every sample of a Prometheus metric (all label sets), or undefined when it has no sample. */
export function metricSum(exposition: string, name: string, labels: Record<string, string> = {}): number | undefined {
  let sum: number | undefined
  for (const line of exposition.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue
    const match = /^([^\s{]+)(\{[^}]*\})?\s+(\S+)/.exec(line)
    if (!match || match[1] !== name) continue
    const labelText = match[2] ?? ''
    if (Object.entries(labels).some(([key, value]) => !labelText.includes(`${key}="${value}"`))) continue
    sum = (sum ?? 0) + Number(match[3])
  }
  return sum
}

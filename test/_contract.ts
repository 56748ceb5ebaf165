/**
 * The cross-runtime HTTP contract harness: starts a fixture server script under a real node/bun/deno process,
 * waits for it to print `LISTENING <url>`, and hands the test `{ url, child, lines, stop() }`. Every child is
 * killed in afterAll (and on exit of the test process), so a failing test never leaks a server.
 *
 * ```ts
 * describe.each(CONTRACT_TARGETS)('$name', (target) => {
 *   const fixture = useFixture(target, 'test/fixtures/adapter-server.ts')
 *   test('GET works', async () => expect((await fetch(`${fixture().url}/ok`)).status).toBe(200))
 * })
 * ```
 * Also here: raw node:net clients for what fetch() cannot express (closing at a known instant, not reading).
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { connect } from 'node:net'
import type { Socket } from 'node:net'
import { afterAll, beforeAll } from 'vitest'
import { sharedNow } from '../core/clock.ts'
import { ROOT, runtimeCommand } from './_runtimes.ts'
import type { Runtime } from './_runtimes.ts'

/** A runtime plus the flags it runs with: one column of a contract suite. */
export interface ContractTarget {
  /** Test title. */
  name: string
  runtime: Runtime
  runtimeFlags?: string[]
}

/**
 * node, bun, deno, and deno with `--unstable-no-legacy-abort`: Deno's request.signal behaves differently under
 * that flag (no abort after success, none on a mid-stream RST), and the default is about to flip
 * (denoland/deno#35733), so the contract is held under both.
 */
export const CONTRACT_TARGETS: readonly ContractTarget[] = [
  { name: 'node', runtime: 'node' },
  { name: 'bun', runtime: 'bun' },
  { name: 'deno', runtime: 'deno' },
  { name: 'deno --unstable-no-legacy-abort', runtime: 'deno', runtimeFlags: ['--unstable-no-legacy-abort'] },
]

export interface ExitStatus {
  code: number | null
  signal: NodeJS.Signals | null
}

export interface Fixture {
  /** What the fixture printed after `LISTENING `: its base URL, no trailing slash. */
  readonly url: string
  readonly child: ChildProcess
  /** Every stdout line so far (the fixture's event log). */
  readonly lines: string[]
  /** All stderr so far (diagnostics). */
  stderr(): string
  /** Settles when the process has exited. */
  readonly exited: Promise<ExitStatus>
  /** Resolves with the first stdout line (past or future) matching `pattern`. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>
  /** Sends `signal` (default SIGTERM), SIGKILLs after `graceMs`, resolves once the process has exited. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<ExitStatus>
}

export interface StartFixtureOptions {
  /** Arguments after the script. */
  args?: string[]
  /** Extra environment for the child. */
  env?: Record<string, string>
  /** Runtime flags placed before the script (deno: `--unstable-…`, node: `--expose-gc`, …). */
  runtimeFlags?: string[]
  /** The line that means "ready"; its first capture group is the URL. Default `/^LISTENING (\S+)/`. */
  readyPattern?: RegExp
  /** How long to wait for the ready line (a cold deno start on a loaded 2-core box takes seconds). */
  readyTimeoutMs?: number
}

const running = new Set<ChildProcess>()
// Last resort: vitest exiting must not leave servers behind.
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL')
})

/** Starts `script` (relative to the repo root) under `target`; resolves once its ready line was printed. */
export async function startFixture(
  target: ContractTarget | Runtime,
  script: string,
  options: StartFixtureOptions = {},
): Promise<Fixture> {
  const { runtime, runtimeFlags: targetFlags = [] } = typeof target === 'string' ? { runtime: target } : target
  const { args = [], env = {}, runtimeFlags = [], readyPattern = /^LISTENING (\S+)/, readyTimeoutMs = 30_000 } = options
  const scriptPath = script.startsWith('/') ? script : `${ROOT}${script}`
  const [command, ...argv] = runtimeCommand(runtime, scriptPath, [...targetFlags, ...runtimeFlags])
  const child = spawn(command!, [...argv, ...args], {
    cwd: ROOT,
    env: { ...process.env, NO_COLOR: '1', DENO_NO_UPDATE_CHECK: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  running.add(child)
  const lines: string[] = []
  const lineWaiters = new Set<(line: string) => void>()
  let stderr = ''
  let partial = ''
  child.stdout!.setEncoding('utf8').on('data', (data: string) => {
    const parts = (partial + data).split('\n')
    partial = parts.pop()!
    for (const line of parts) {
      lines.push(line)
      for (const waiter of lineWaiters) waiter(line)
    }
  })
  child.stderr!.setEncoding('utf8').on('data', (data: string) => (stderr += data))
  const exited = new Promise<ExitStatus>((resolve) => {
    child.once('exit', (code, signal) => {
      running.delete(child)
      resolve({ code, signal })
    })
  })

  const describeChild = (): string => `${runtime} ${script}\n--- stdout\n${lines.join('\n')}\n--- stderr\n${stderr}`

  function waitForLine(pattern: RegExp, timeoutMs = 10_000): Promise<string> {
    const seen = lines.find((line) => pattern.test(line))
    if (seen !== undefined) return Promise.resolve(seen)
    return new Promise((resolve, reject) => {
      const done = (error: Error | undefined, line?: string): void => {
        clearTimeout(timer)
        lineWaiters.delete(onLine)
        if (error) reject(error)
        else resolve(line!)
      }
      const onLine = (line: string): void => {
        if (pattern.test(line)) done(undefined, line)
      }
      const timer = setTimeout(
        () => done(new Error(`no line matching ${pattern} in ${timeoutMs} ms: ${describeChild()}`)),
        timeoutMs,
      )
      lineWaiters.add(onLine)
      void exited.then(({ code, signal }) =>
        done(new Error(`exited (${code ?? signal}) before a line matching ${pattern}: ${describeChild()}`)),
      )
    })
  }

  async function stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 3_000): Promise<ExitStatus> {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill(signal)
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
      await exited
      clearTimeout(timer)
    }
    return exited
  }

  try {
    const readyLine = await waitForLine(readyPattern, readyTimeoutMs)
    const url = readyPattern.exec(readyLine)?.[1]
    if (url === undefined) throw new Error(`ready line has no URL group: ${readyLine}`)
    return { url, child, lines, stderr: () => stderr, exited, waitForLine, stop }
  } catch (error) {
    child.kill('SIGKILL')
    throw error
  }
}

/**
 * Starts the fixture in beforeAll and always stops it in afterAll; returns an accessor for the running fixture
 * (call it inside tests).
 */
export function useFixture(
  target: ContractTarget | Runtime,
  script: string,
  options?: StartFixtureOptions,
): () => Fixture {
  let fixture: Fixture | undefined
  beforeAll(async () => {
    fixture = await startFixture(target, script, options)
  })
  afterAll(async () => {
    await fixture?.stop('SIGKILL')
  })
  return () => {
    if (fixture === undefined) throw new Error(`fixture ${script} is not running (did beforeAll fail?)`)
    return fixture
  }
}

/** A raw HTTP/1.1 client connection (node:net), for closing at a known instant or not reading at all. */
export interface RawConnection {
  readonly socket: Socket
  /** Everything received so far, as latin1 text (byte-exact length). */
  text(): string
  /** Bytes received so far. */
  received(): number
  /** Resolves once `predicate(text)` holds; rejects after `timeoutMs` or if the connection closes first. */
  until(predicate: (text: string) => boolean, timeoutMs?: number): Promise<void>
  /** Destroys the socket (FIN) and returns the epoch-ms instant just before, on the shared clock. */
  close(): number
  /** Resolves when the socket is closed (by either side). */
  readonly closed: Promise<void>
}

/**
 * Opens a raw connection to `baseUrl` and records everything it receives; the caller writes the requests
 * (e.g. several pipelined on one keep-alive connection). `rawRequest` is this plus one `Connection: close` request.
 */
export async function openRawConnection(baseUrl: string): Promise<RawConnection> {
  const { hostname, port } = new URL(baseUrl)
  const socket = connect({ host: hostname.replace(/^\[|\]$/g, ''), port: Number(port) })
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  const chunks: Buffer[] = []
  let size = 0
  const listeners = new Set<() => void>()
  socket.on('data', (chunk: Buffer) => {
    chunks.push(chunk)
    size += chunk.byteLength
    for (const listener of listeners) listener()
  })
  socket.on('error', () => {}) // an RST from the server is an outcome the tests look at, not a crash
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  void closed.then(() => {
    for (const listener of listeners) listener()
  })

  const text = (): string => Buffer.concat(chunks).toString('latin1')
  return {
    socket,
    text,
    received: () => size,
    until(predicate, timeoutMs = 5_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if (predicate(text())) finish()
          else if (socket.destroyed) finish(new Error(`connection closed before the condition held; got:\n${text()}`))
        }
        const finish = (error?: Error): void => {
          listeners.delete(check)
          clearTimeout(timer)
          if (error) reject(error)
          else resolve()
        }
        const timer = setTimeout(
          () => finish(new Error(`condition not met in ${timeoutMs} ms; got:\n${text()}`)),
          timeoutMs,
        )
        listeners.add(check)
        check()
      })
    },
    close() {
      const at = sharedNow()
      socket.destroy()
      return at
    },
    closed,
  }
}

/** Opens a connection to `baseUrl` and sends one request for `path` (`Connection: close`). */
export async function rawRequest(
  baseUrl: string,
  path: string,
  { method = 'GET', headers = {}, body }: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<RawConnection> {
  const connection = await openRawConnection(baseUrl)
  const head = [`${method} ${path} HTTP/1.1`, `Host: ${new URL(baseUrl).host}`, 'Connection: close']
  for (const [name, value] of Object.entries(headers)) head.push(`${name}: ${value}`)
  if (body !== undefined) head.push(`Content-Length: ${Buffer.byteLength(body)}`)
  connection.socket.write(`${head.join('\r\n')}\r\n\r\n${body ?? ''}`)
  return connection
}

/** What became of a fresh connection: refused, accepted but closed without an answer, or answered. */
export type NewConnectionOutcome = 'refused' | 'closed-unanswered' | 'answered'

/**
 * Opens a new connection to `baseUrl` and sends `GET /`: reports whether it was refused (ECONNREFUSED), accepted
 * and then closed without a single response byte, or answered.
 */
export function newConnectionOutcome(baseUrl: string, timeoutMs = 5_000): Promise<NewConnectionOutcome> {
  const { hostname, port, host } = new URL(baseUrl)
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname.replace(/^\[|\]$/g, ''), port: Number(port) })
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`a new connection to ${baseUrl} was neither answered nor closed in ${timeoutMs} ms`))
    }, timeoutMs)
    let answered = false
    socket.once('connect', () => socket.write(`GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`))
    socket.once('data', () => {
      answered = true
      socket.destroy()
    })
    socket.once('close', () => {
      clearTimeout(timer)
      resolve(answered ? 'answered' : 'closed-unanswered')
    })
    socket.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'ECONNREFUSED' && error.code !== 'ECONNRESET') return
      clearTimeout(timer)
      resolve(error.code === 'ECONNREFUSED' ? 'refused' : 'closed-unanswered')
    })
  })
}

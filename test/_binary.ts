/**
 * The real `sluice` binary (`node adapters/node/bin.js`, which runs the build in dist/) as a child process of a
 * test file: dist/ rebuilt first when stale, every child killed after the file's tests, and a started binary's
 * stdout lines and stderr kept, with a wait for what they show. (test/chaos/binary.ts is the soak's variant.)
 */
import { spawn, spawnSync } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll } from 'vitest'
import { ROOT } from './_runtimes.ts'

export const BIN = join(ROOT, 'adapters/node/bin.js')

/** Newest mtime of the sources the build compiles (core/, adapters/node/, the build config). */
function newestSourceMtime(): number {
  let newest = statSync(join(ROOT, 'tsconfig.build.json')).mtimeMs
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name)
      if (entry.isDirectory()) walk(path)
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts')) {
        newest = Math.max(newest, statSync(path).mtimeMs)
      }
    }
  }
  walk(join(ROOT, 'core'))
  walk(join(ROOT, 'adapters/node'))
  return newest
}

const running = new Set<ChildProcess>()

/**
 * The file's hooks. Before its tests: `npm test` builds first, but a direct vitest run after editing a source
 * must not test a stale dist/, so the build runs when `artifact` (a file in dist/) is missing or older than a
 * source. tsc emits even when some other file has a type error (that is the typecheck's job, not these suites').
 * After its tests: every binary still running is killed.
 */
export function useBuiltBinary(artifact: string): void {
  beforeAll(() => {
    if (existsSync(artifact) && statSync(artifact).mtimeMs >= newestSourceMtime()) return
    const tsc = join(ROOT, 'node_modules/typescript/bin/tsc')
    const build = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: ROOT, encoding: 'utf8' })
    if (!existsSync(artifact)) throw new Error(`npm run build produced no ${artifact}:\n${build.stdout}${build.stderr}`)
    if (build.status !== 0) console.warn(`the build reported type errors (dist/ emitted):\n${build.stdout}`)
  }, 120_000)
  afterAll(() => {
    for (const child of running) child.kill('SIGKILL')
  })
}

export interface BinaryProcess {
  /** From the banner line. */
  url: string
  child: ChildProcess
  /** Every stdout line so far, the banner included. */
  lines: string[]
  stderr(): string
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /**
   * Resolves with what `find` returns once it is not undefined (checked now and on every output); rejects, with
   * the output so far, when the binary exits first or after `timeoutMs`.
   */
  until<T>(find: () => T | undefined, what: string, timeoutMs: number): Promise<T>
}

/** Starts `bin.js --port 0 ...args` (env added to this process's) and resolves once its banner named the URL. */
export async function startBinaryProcess(
  args: string[],
  env: Record<string, string> = {},
  readyTimeoutMs = 20_000,
): Promise<BinaryProcess> {
  const child = spawn(process.execPath, [BIN, '--port', '0', ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  running.add(child)
  const lines: string[] = []
  let stdoutPartial = ''
  let stderr = ''
  const watchers = new Set<() => void>()
  const notify = (): void => {
    for (const watcher of [...watchers]) watcher()
  }
  child.stdout!.setEncoding('utf8').on('data', (data: string) => {
    const parts = (stdoutPartial + data).split('\n')
    stdoutPartial = parts.pop()!
    lines.push(...parts)
    notify()
  })
  child.stderr!.setEncoding('utf8').on('data', (data: string) => {
    stderr += data
    notify()
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      running.delete(child)
      resolve({ code, signal })
      notify()
    })
  })
  const until = <T>(find: () => T | undefined, what: string, timeoutMs: number): Promise<T> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const found = find()
        if (found !== undefined) return finish(undefined, found)
        if (child.exitCode !== null || child.signalCode !== null) finish(new Error(`binary exited before ${what}`))
      }
      const finish = (error: Error | undefined, found?: T): void => {
        watchers.delete(check)
        clearTimeout(timer)
        if (error) reject(new Error(`${error.message}\n--- stdout\n${lines.join('\n')}\n--- stderr\n${stderr}`))
        else resolve(found!)
      }
      const timer = setTimeout(() => finish(new Error(`no ${what} in ${timeoutMs} ms`)), timeoutMs)
      watchers.add(check)
      check()
    })
  const banner = await until(
    () => lines.find((line) => /^sluice \S+ listening on http:\/\/\S+$/.test(line)),
    'banner',
    readyTimeoutMs,
  )
  const url = banner.slice(banner.lastIndexOf(' ') + 1)
  return { url, child, lines, stderr: () => stderr, exited, until }
}

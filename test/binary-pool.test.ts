/**
 * The real `sluice` binary with `--workers 2` (dist/, so the workers load dist/core/pool/pool-worker.js): the
 * embedded demo model served by each worker, a real upstream, token usage in the access log line, and a SIGTERM
 * drain that ends the process.
 */
import { spawn, spawnSync } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { ROOT } from './_runtimes.ts'
import { expectedContent, mockModel } from './upstream/behaviour.ts'
import { contentOf, readSse } from './upstream/harness.ts'
import { startUpstream, type TestUpstream } from './upstream/server.ts'

const BIN = join(ROOT, 'adapters/node/bin.js')
const DIST_WORKER = join(ROOT, 'dist/core/pool/pool-worker.js')
const messages = [{ role: 'user', content: 'hi' }]

function newestSourceMtime(): number {
  let newest = statSync(join(ROOT, 'tsconfig.build.json')).mtimeMs
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name)
      if (entry.isDirectory()) walk(path)
      else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(path).mtimeMs)
    }
  }
  walk(join(ROOT, 'core'))
  walk(join(ROOT, 'adapters/node'))
  return newest
}

// `npm test` builds first; a direct vitest run after an edit must not test a stale dist/ (as test/binary.test.ts).
beforeAll(() => {
  if (existsSync(DIST_WORKER) && statSync(DIST_WORKER).mtimeMs >= newestSourceMtime()) return
  const tsc = join(ROOT, 'node_modules/typescript/bin/tsc')
  spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: ROOT, encoding: 'utf8' })
  if (!existsSync(DIST_WORKER)) throw new Error(`the build produced no ${DIST_WORKER}`)
}, 120_000)

const running = new Set<ChildProcess>()
afterAll(() => {
  for (const child of running) child.kill('SIGKILL')
})

interface Binary {
  url: string
  child: ChildProcess
  lines: string[]
  stderr: () => string
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** Resolves with the access log entries once `count` of them were written. */
  accessLog(count: number): Promise<Record<string, unknown>[]>
}

async function startBinary(args: string[]): Promise<Binary> {
  const child = spawn(process.execPath, [BIN, '--port', '0', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  running.add(child)
  const lines: string[] = []
  let partial = ''
  let stderr = ''
  const watchers = new Set<() => void>()
  const notify = (): void => void [...watchers].forEach((watcher) => watcher())
  child.stdout!.setEncoding('utf8').on('data', (data: string) => {
    const parts = (partial + data).split('\n')
    partial = parts.pop()!
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
  const until = <T>(find: () => T | undefined, what: string): Promise<T> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const found = find()
        if (found !== undefined) return done(undefined, found)
        if (child.exitCode !== null || child.signalCode !== null) done(new Error(`binary exited before ${what}`))
      }
      const done = (error: Error | undefined, found?: T): void => {
        watchers.delete(check)
        clearTimeout(timer)
        if (error) reject(new Error(`${error.message}\n--- stdout\n${lines.join('\n')}\n--- stderr\n${stderr}`))
        else resolve(found!)
      }
      const timer = setTimeout(() => done(new Error(`no ${what} in 20 s`)), 20_000)
      watchers.add(check)
      check()
    })
  const banner = await until(() => lines.find((line) => /^sluice \S+ listening on http:\/\/\S+$/.test(line)), 'banner')
  const entries = (): Record<string, unknown>[] =>
    lines.filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as Record<string, unknown>)
  return {
    url: banner.slice(banner.lastIndexOf(' ') + 1),
    child,
    lines,
    stderr: () => stderr,
    exited,
    accessLog: (count) => until(() => (entries().length >= count ? entries() : undefined), `${count} access log lines`),
  }
}

function chat(url: string, model: string, stream = true): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, stream, messages }),
  })
}

describe('sluice --workers 2', () => {
  let upstream: TestUpstream
  beforeAll(async () => {
    upstream = await startUpstream()
  })
  afterAll(() => upstream.close())

  test('serves the embedded demo model from each worker, logs usage, drains on SIGTERM and exits', async () => {
    const binary = await startBinary(['--workers', '2'])
    expect(binary.lines.join('\n')).toContain('workers: 2')
    const reads = await Promise.all([1, 2, 3, 4].map(async () => readSse(await chat(binary.url, 'demo'))))
    for (const read of reads) {
      expect(read.error).toBeUndefined()
      expect(read.events.at(-1)!.data).toBe('[DONE]')
      expect(contentOf(read.events).length).toBeGreaterThan(0)
    }
    const buffered = (await (await chat(binary.url, 'demo', false)).json()) as {
      choices: { message: { content: string } }[]
    }
    expect(buffered.choices[0]!.message.content.length).toBeGreaterThan(0)
    const log = await binary.accessLog(5)
    const streams = log.filter((entry) => entry.kind === 'stream')
    expect(streams).toHaveLength(4)
    for (const entry of streams) {
      expect(entry).toMatchObject({ status: 200, outcome: 'completed', usage_source: 'counted', prompt_tokens: null })
    }
    // The demo model sends no usage object: sluice counted the non-empty content deltas each client received.
    const deltas = (events: { data: string }[]): number =>
      events.filter((event) => event.data !== '[DONE]' && /"content":"[^"]/.test(event.data)).length
    const counted = streams.map((entry) => entry.completion_tokens as number).sort((a, b) => a - b)
    expect(counted).toEqual(reads.map((read) => deltas(read.events)).sort((a, b) => a - b))
    expect(counted[0]).toBeGreaterThan(0)
    binary.child.kill('SIGTERM')
    expect(await binary.exited).toEqual({ code: 0, signal: null })
    expect(binary.stderr()).toContain('drained, bye')
  })

  test('in front of a real upstream: streams, upstream usage in the log, a drain ending a live stream', async () => {
    const binary = await startBinary(['--workers', '2', '--upstream', upstream.url, '--drain-timeout', '300ms'])
    const read = await readSse(await chat(binary.url, mockModel({ id: 'bin-pool', chunks: 20, delay: 1 })))
    expect(contentOf(read.events)).toBe(expectedContent(20))
    const [entry] = await binary.accessLog(1)
    expect(entry).toMatchObject({
      outcome: 'completed',
      usage_source: 'upstream',
      completion_tokens: 20,
      prompt_tokens: 3,
    })
    const live = await chat(binary.url, mockModel({ id: 'bin-pool-live', chunks: 5, stallAfter: 1, stallMs: 30_000 }))
    const reading = readSse(live)
    await upstream.waitFor('bin-pool-live', (record) => record.chunksWritten >= 1)
    binary.child.kill('SIGTERM')
    const cut = await reading
    expect(JSON.parse(cut.events.at(-1)!.data)).toMatchObject({ error: { code: 'server_shutdown' } })
    expect(await binary.exited).toEqual({ code: 0, signal: null })
    expect((await upstream.waitForClosed('bin-pool-live')).outcome).toBe('aborted')
  })
})

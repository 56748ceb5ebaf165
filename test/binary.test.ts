/**
 * The real `sluice` binary (`node adapters/node/bin.js`, which runs the build in dist/): usage errors, the
 * embedded demo and the curl line its banner prints, the official `openai` client through it in front of the
 * test upstream, the access log, key hygiene, and SIGTERM/SIGINT handling.
 */
import { spawn, spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { BIN, type BinaryProcess, startBinaryProcess, useBuiltBinary } from './_binary.ts'
import { ROOT } from './_runtimes.ts'
import { expectedContent, mockModel } from './upstream/behaviour.ts'
import { contentOf, readSse } from './upstream/harness.ts'
import { startUpstream, type TestUpstream } from './upstream/server.ts'

const DIST_CLI = join(ROOT, 'dist/adapters/node/cli.js')
const UPSTREAM_KEY = 'sk-binary-upstream-4c1d8e22'
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version
const messages = [{ role: 'user' as const, content: 'hi' }]

useBuiltBinary(DIST_CLI)

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

function runBinary(args: string[], env: Record<string, string> = {}): Run {
  const result = spawnSync(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 20_000,
  })
  return { code: result.status, stdout: result.stdout, stderr: result.stderr }
}

interface Binary extends BinaryProcess {
  waitFor(pattern: RegExp, where?: 'stdout' | 'stderr', timeoutMs?: number): Promise<string>
}

/** Starts the binary and resolves once its banner named the URL. */
async function startBinary(args: string[], env: Record<string, string> = {}): Promise<Binary> {
  const binary = await startBinaryProcess(args, env, 15_000)
  const waitFor = (pattern: RegExp, where: 'stdout' | 'stderr' = 'stdout', timeoutMs = 15_000): Promise<string> =>
    binary.until(
      () => (where === 'stdout' ? binary.lines.find((line) => pattern.test(line)) : pattern.exec(binary.stderr())?.[0]),
      `${where} match for ${pattern}`,
      timeoutMs,
    )
  return { ...binary, waitFor }
}

function accessLog(binary: Binary): Record<string, unknown>[] {
  return binary.lines.filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as Record<string, unknown>)
}

describe('usage', () => {
  test('--help and --version exit 0', () => {
    const help = runBinary(['--help'])
    expect(help.code).toBe(0)
    expect(help.stdout).toMatch(/^Usage: sluice \[flags\]/)
    for (const flag of ['--upstream', '--upstream-key-env', '--concurrency', '--idle-timeout', '--drain-timeout']) {
      expect(help.stdout).toContain(flag)
    }
    const version = runBinary(['--version'])
    expect(version.code).toBe(0)
    expect(version.stdout).toBe(`sluice ${VERSION}\n`)
  })

  test.each<{ args: string[]; env: Record<string, string>; names: string[] }>([
    { args: ['--port', 'abc'], env: {}, names: ['--port', 'abc'] },
    { args: ['--idle-timeout', '5 seconds'], env: {}, names: ['--idle-timeout', '5 seconds'] },
    { args: ['--upstream', 'ftp://example.com/v1'], env: {}, names: ['--upstream', 'ftp://example.com/v1'] },
    { args: ['--concurrency', '0'], env: {}, names: ['--concurrency', '0'] },
    { args: ['--stream-weight', '9', '--concurrency', '4'], env: {}, names: ['--stream-weight', '9'] },
    { args: [], env: { SLUICE_IDLE_TIMEOUT: 'bogus' }, names: ['SLUICE_IDLE_TIMEOUT', 'bogus'] },
    { args: ['--bogus'], env: {}, names: ['--bogus'] },
  ])('$args $env → exit 2 with one stderr line naming $names', ({ args, env, names }) => {
    const run = runBinary(args, env)
    expect(run.code).toBe(2)
    expect(run.stdout).toBe('')
    expect(run.stderr.endsWith('\n')).toBe(true)
    expect(run.stderr.trimEnd().split('\n')).toHaveLength(1)
    for (const name of names) expect(run.stderr).toContain(name)
  })
})

describe('with no --upstream: the embedded demo', () => {
  let demo: Binary
  beforeAll(async () => {
    demo = await startBinary([])
  })
  afterAll(() => demo?.child.kill('SIGKILL'))

  test("the banner's curl -N line works as printed", async () => {
    const command = (await demo.waitFor(/^\s+curl -N /)).trim()
    expect(command).toContain(`${demo.url}/v1/chat/completions`)
    const curl = spawnSync('sh', ['-c', 'command -v curl'], { encoding: 'utf8' }).status === 0
    // The exact printed line through a shell when curl exists; otherwise the same request replayed with fetch.
    const output = curl ? await shell(command) : await replayCurl(command)
    const events = parseSse(output)
    expect(events.at(-1)?.data).toBe('[DONE]')
    const content = contentOf(events)
    expect(content).toMatch(/^You said: "Hello, sluice!"\. sluice is streaming this reply/)
    // The binary writes access-log lines once per event-loop turn: the line may land just after curl is done.
    await demo.waitFor(/^\{.*"outcome":"completed"/)
    const [entry] = accessLog(demo)
    expect(entry).toMatchObject({ kind: 'stream', status: 200, outcome: 'completed', chunks: events.length - 1 })
  })

  test('SIGTERM with nothing in flight exits 0 at once', async () => {
    demo.child.kill('SIGTERM')
    expect(await demo.exited).toEqual({ code: 0, signal: null })
    expect(demo.stderr()).toContain('drained')
  })
})

function shell(command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', command], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (data: string) => (stdout += data))
    child.stderr.setEncoding('utf8').on('data', (data: string) => (stderr += data))
    child.once('exit', (code) => {
      if (code === 0) resolve(stdout)
      else reject(new Error(`${command}: exit ${code}\n${stderr}`))
    })
  })
}

/** The banner's curl line as a fetch: its URL, each -H 'name: value' and the -d '…' body (POST). */
async function replayCurl(command: string): Promise<string> {
  const url = /curl -N (\S+)/.exec(command)?.[1]
  const headers = Object.fromEntries(
    [...command.matchAll(/-H '([^:']+):\s*([^']*)'/g)].map((match) => [match[1]!, match[2]!] as const),
  )
  const body = /-d '([^']*)'/.exec(command)?.[1]
  if (url === undefined || body === undefined) throw new Error(`cannot replay ${command}`)
  return (await fetch(url, { method: 'POST', headers, body })).text()
}

function parseSse(text: string): EventSourceMessage[] {
  const events: EventSourceMessage[] = []
  const parser = createParser({ onEvent: (event) => events.push(event) })
  parser.feed(text)
  return events
}

describe('with --upstream and --upstream-key-env: in front of the test upstream', () => {
  let upstream: TestUpstream
  let binary: Binary
  let openai: OpenAI
  beforeAll(async () => {
    upstream = await startUpstream({ apiKey: UPSTREAM_KEY })
    binary = await startBinary(
      ['--upstream', upstream.url, '--upstream-key-env', 'BINARY_TEST_KEY', '--drain-timeout', '5s'],
      { BINARY_TEST_KEY: UPSTREAM_KEY },
    )
    // The SDK's own key goes to the gateway, which has no gateway keys here; the upstream must never see it.
    openai = new OpenAI({ baseURL: `${binary.url}/v1`, apiKey: 'sk-client-side', maxRetries: 0 })
  })
  afterAll(async () => {
    binary?.child.kill('SIGKILL')
    await upstream?.close()
  })

  test('the openai v6 client streams a chat completion through the binary and gets every token', async () => {
    let content = ''
    let finish: string | null = null
    const stream = await openai.chat.completions.create({
      model: mockModel({ id: 'bin-sdk', chunks: 40, delay: 1 }),
      messages,
      stream: true,
    })
    for await (const chunk of stream) {
      content += chunk.choices[0]?.delta.content ?? ''
      finish = chunk.choices[0]?.finish_reason ?? finish
    }
    expect(content).toBe(expectedContent(40))
    expect(finish).toBe('stop')
    const [record] = upstream.attempts('bin-sdk')
    expect(record?.authorization).toBe(`Bearer ${UPSTREAM_KEY}`)
    expect(JSON.stringify(record?.headers)).not.toContain('sk-client-side')
  })

  test('a mid-stream upstream fault surfaces in the SDK as an APIError, not a normal end', async () => {
    let content = ''
    const iterate = async (): Promise<void> => {
      const stream = await openai.chat.completions.create({
        model: mockModel({ id: 'bin-cut', chunks: 10, cutAfter: 3 }),
        messages,
        stream: true,
      })
      for await (const chunk of stream) content += chunk.choices[0]?.delta.content ?? ''
    }
    const error = await iterate().catch((e: unknown) => e)
    expect(error).toBeInstanceOf(OpenAI.APIError)
    expect(error).toMatchObject({ code: 'upstream_truncated', type: 'server_error' })
    expect(content).toBe(expectedContent(3))
  })

  test('the access log: one JSON line per stream with id, status, ttfc_ms, duration_ms, chunks, outcome', async () => {
    await binary.waitFor(/"outcome":"error"/)
    const [ok, cut, ...rest] = accessLog(binary)
    expect(rest).toEqual([])
    for (const entry of [ok, cut]) {
      expect(Object.keys(entry!)).toEqual(
        expect.arrayContaining(['id', 'status', 'ttfc_ms', 'duration_ms', 'chunks', 'outcome']),
      )
      expect(entry!.id).toMatch(/\S/)
      expect(entry!.duration_ms).toBeGreaterThanOrEqual(entry!.ttfc_ms as number)
    }
    expect(ok).toMatchObject({ kind: 'stream', status: 200, outcome: 'completed', chunks: 40 + 2 })
    expect(cut).toMatchObject({ kind: 'stream', status: 200, outcome: 'error', chunks: 1 + 3 })
    expect(ok!.id).not.toBe(cut!.id)
  })

  test('SIGTERM with a live stream: it finishes, the binary exits 0; the upstream key was never printed', async () => {
    const response = await fetch(`${binary.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: mockModel({ id: 'bin-drain', chunks: 10, delay: 100 }), messages, stream: true }),
    })
    await upstream.waitFor('bin-drain', (record) => record.chunksWritten >= 1)
    binary.child.kill('SIGTERM')
    await binary.waitFor(/draining/, 'stderr')
    const read = await readSse(response)
    expect(read.error).toBeUndefined()
    expect(read.events.at(-1)?.data).toBe('[DONE]')
    expect(contentOf(read.events)).toBe(expectedContent(10))
    expect(await binary.exited).toEqual({ code: 0, signal: null })
    expect(binary.stderr()).toMatch(/drained/)
    const printed = `${binary.lines.join('\n')}\n${binary.stderr()}`
    expect(printed).toContain(upstream.url)
    expect(printed).not.toContain(UPSTREAM_KEY)
  })

  test('a second signal during the drain exits at once', async () => {
    const second = await startBinary(
      ['--upstream', upstream.url, '--upstream-key-env', 'BINARY_TEST_KEY', '--drain-timeout', '60s'],
      { BINARY_TEST_KEY: UPSTREAM_KEY },
    )
    const response = await fetch(`${second.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: mockModel({ id: 'bin-second', stallAfter: 1 }), messages, stream: true }),
    })
    await upstream.waitFor('bin-second', (record) => record.chunksWritten === 1)
    second.child.kill('SIGTERM')
    await second.waitFor(/draining/, 'stderr')
    const signalledAt = Date.now()
    second.child.kill('SIGINT')
    const status = await second.exited
    expect(Date.now() - signalledAt).toBeLessThan(2_000)
    expect(status.code).not.toBe(0)
    expect(second.stderr()).toMatch(/SIGINT again, exiting now/)
    await response.body?.cancel().catch(() => {})
    expect((await upstream.waitForClosed('bin-second')).outcome).toBe('aborted')
  })
})

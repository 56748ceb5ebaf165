/**
 * The real `sluice` binary with `--workers 2` (dist/, so the workers load dist/core/pool/pool-worker.js): the
 * embedded demo model served by each worker, a real upstream, token usage in the access log line, and a SIGTERM
 * drain that ends the process.
 */
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { type BinaryProcess, startBinaryProcess, useBuiltBinary } from './_binary.ts'
import { ROOT } from './_runtimes.ts'
import { expectedContent, mockModel } from './upstream/behaviour.ts'
import { contentOf, readSse } from './upstream/harness.ts'
import { startUpstream, type TestUpstream } from './upstream/server.ts'

const DIST_WORKER = join(ROOT, 'dist/core/pool/pool-worker.js')
const messages = [{ role: 'user', content: 'hi' }]

// The workers load dist/core/pool/pool-worker.js: rebuilt when stale (as test/binary.test.ts does for its CLI).
useBuiltBinary(DIST_WORKER)

interface Binary extends BinaryProcess {
  /** Resolves with the access log entries once `count` of them were written. */
  accessLog(count: number): Promise<Record<string, unknown>[]>
}

async function startBinary(args: string[]): Promise<Binary> {
  const binary = await startBinaryProcess(args)
  const entries = (): Record<string, unknown>[] =>
    binary.lines.filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as Record<string, unknown>)
  const accessLog = (count: number): Promise<Record<string, unknown>[]> =>
    binary.until(() => (entries().length >= count ? entries() : undefined), `${count} access log lines`, 20_000)
  return { ...binary, accessLog }
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

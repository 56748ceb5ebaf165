/**
 * The real `sluice` binary with `--upstream-http2` in front of the test upstream in its h2c mode: streams intact,
 * a client abort reaching the upstream, many streams on few upstream connections, upstream errors mapped as over
 * HTTP/1.1 (against a second binary on an HTTP/1.1 upstream), the same through a worker thread, and the usage error.
 */
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { BIN, type BinaryProcess, startBinaryProcess, useBuiltBinary } from './_binary.ts'
import { ROOT } from './_runtimes.ts'
import { type Behaviour, expectedContent, mockModel } from './upstream/behaviour.ts'
import { contentOf, readSse } from './upstream/harness.ts'
import { startUpstream, type TestUpstream } from './upstream/server.ts'

useBuiltBinary(join(ROOT, 'dist/adapters/node/cli.js'))

const FLAGS = ['--concurrency', '512', '--retries', '0']

let h2c: TestUpstream
let http1: TestUpstream
let viaH2: BinaryProcess
let viaH1: BinaryProcess
beforeAll(async () => {
  ;[h2c, http1] = await Promise.all([startUpstream({ http2: true }), startUpstream()])
  ;[viaH2, viaH1] = await Promise.all([
    startBinaryProcess(['--upstream', h2c.url, '--upstream-http2', ...FLAGS]),
    startBinaryProcess(['--upstream', http1.url, ...FLAGS]),
  ])
})
afterAll(async () => {
  viaH2?.child.kill('SIGKILL')
  viaH1?.child.kill('SIGKILL')
  await Promise.all([h2c?.close(), http1?.close()])
})

type Fields = Partial<Record<keyof Behaviour, string | number | boolean>>

function chat(binary: BinaryProcess, fields: Fields, init: RequestInit = {}): Promise<Response> {
  return fetch(`${binary.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: mockModel(fields), stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    ...init,
  })
}

test('--upstream-http2 with --upstream-client fetch is a startup error naming both (exit 2)', () => {
  const run = spawnSync(
    process.execPath,
    [BIN, '--upstream', 'http://127.0.0.1:9/v1', '--upstream-http2', '--upstream-client', 'fetch'],
    { cwd: ROOT, encoding: 'utf8', timeout: 20_000 },
  )
  expect(run.status).toBe(2)
  expect(run.stderr).toBe(
    'sluice: Invalid --upstream-http2 with --upstream-client `fetch`: HTTP/2 needs --upstream-client undici\n',
  )
})

describe('in-process', () => {
  test('the banner names the client; a full stream arrives intact, over HTTP/2 upstream', async () => {
    expect(viaH2.lines.join('\n')).toContain(`${h2c.url} (client: undici, HTTP/2 h2c)`)
    const read = await readSse(await chat(viaH2, { id: 'bh2-full', chunks: 20, delay: 5 }))
    expect(read.error).toBeUndefined()
    expect(contentOf(read.events)).toBe(expectedContent(20))
    expect(read.events.at(-1)?.data).toBe('[DONE]')
    // The client can have every byte before the upstream's h2 stream reports its close: wait for that.
    const record = await h2c.waitForClosed('bh2-full')
    // HTTP/2 pseudo-headers: the request really came over h2.
    expect(record).toMatchObject({ outcome: 'completed', headers: { ':method': 'POST', ':scheme': 'http' } })
  })

  test('a client abort mid-stream closes the upstream stream within 500 ms', async () => {
    const controller = new AbortController()
    const response = await chat(viaH2, { id: 'bh2-abort', chunks: 5, stallAfter: 2 }, { signal: controller.signal })
    const reader = response.body!.getReader()
    await h2c.waitFor('bh2-abort', (record) => record.chunksWritten === 2)
    await reader.read()
    const abortedAt = Date.now()
    controller.abort()
    const closed = await h2c.waitForClosed('bh2-abort')
    expect(closed.outcome).toBe('aborted')
    expect(closed.closedAt! - abortedAt).toBeLessThan(500)
  })

  test('200 concurrent streams use at most 3 upstream connections, and all complete', async () => {
    const before = h2c.acceptedConnections()
    // Each stream lasts about 3 s so that all 200 are open upstream at the same time even on a loaded machine
    // (at 100 ms apart a CI run under load saw them finish before the last ones started).
    const reads = Array.from({ length: 200 }, async (_, index) =>
      readSse(await chat(viaH2, { id: `bh2-many-${index}`, chunks: 3, delay: 1_000 })))
    await h2c.waitForInFlight(200, 20_000)
    expect(h2c.openConnections()).toBeLessThanOrEqual(3)
    const done = await Promise.all(reads)
    expect(done.filter((read) => contentOf(read.events) === expectedContent(3))).toHaveLength(200)
    expect(h2c.acceptedConnections() - before).toBeLessThanOrEqual(2)
  })

  test.each<[string, Fields]>([
    ['400', { fail: 400 }],
    ['429 with Retry-After', { fail: 429, retryAfter: '7' }],
    ['503', { fail: 503 }],
  ])('an upstream %s before the first byte maps as over HTTP/1.1', async (name, fields) => {
    const id = `bh2-fail-${name.slice(0, 3)}`
    const [h2, h1] = await Promise.all([chat(viaH2, { id, ...fields }), chat(viaH1, { id, ...fields })])
    expect(h2.status).toBe(h1.status)
    expect(h2.headers.get('content-type')).toBe(h1.headers.get('content-type'))
    expect(h2.headers.get('retry-after')).toBe(h1.headers.get('retry-after'))
    const [h2Body, h1Body] = await Promise.all([h2.text(), h1.text()])
    // The gateway's error bodies may carry a request id; the rest must be the same.
    const strip = (text: string): string => text.replace(/"(?:id|request_id)":"[^"]*"/g, '"id":""')
    expect(strip(h2Body)).toBe(strip(h1Body))
  })
})

describe('--workers 1', () => {
  let viaWorker: BinaryProcess
  beforeAll(async () => {
    viaWorker = await startBinaryProcess(['--upstream', h2c.url, '--upstream-http2', '--workers', '1', ...FLAGS])
  })
  afterAll(() => viaWorker?.child.kill('SIGKILL'))

  test("the worker's upstream fetch speaks HTTP/2 too: 50 streams on one connection, intact", async () => {
    const before = h2c.acceptedConnections()
    const reads = await Promise.all(
      Array.from({ length: 50 }, async (_, index) =>
        readSse(await chat(viaWorker, { id: `bh2-worker-${index}`, chunks: 3, delay: 50 }))),
    )
    expect(reads.filter((read) => contentOf(read.events) === expectedContent(3))).toHaveLength(50)
    expect(h2c.attempts('bh2-worker-0')[0]).toMatchObject({ headers: { ':method': 'POST' } })
    expect(h2c.acceptedConnections() - before).toBe(1)
  })
})

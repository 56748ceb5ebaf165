// createUpstreamFetch({ http2: true }) against the test upstream in its h2c mode, over loopback: the same bytes,
// errors and cancellation as over HTTP/1.1, and many streams on few connections. Over https (a throwaway CA made by
// openssl, trusted with `caCerts`): h2 negotiated by ALPN, and an upstream that picks HTTP/1.1 refused.
import { createServer } from 'node:http'
import { createSecureServer, type Http2SecureServer } from 'node:http2'
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { createUpstreamFetch, type UpstreamFetch } from '../adapters/node/upstream-fetch.ts'
import { STREAMS_PER_CONNECTION } from '../adapters/node/http2-pool.ts'
import { sharedNow } from '../core/clock.ts'
import { makeTestCertificate, type TestCertificate } from './_tls.ts'
import { chatInit } from './upstream/behaviour.ts'
import { startUpstream, type TestUpstream } from './upstream/server.ts'

let h2c: TestUpstream
let http1: TestUpstream
let h2Fetch: UpstreamFetch
let h1Fetch: UpstreamFetch
beforeAll(async () => {
  ;[h2c, http1] = await Promise.all([startUpstream({ http2: true }), startUpstream()])
  h2Fetch = createUpstreamFetch({ http2: true })
  h1Fetch = createUpstreamFetch()
})
afterAll(async () => {
  // The upstreams first: closing them ends whatever a failed test left streaming, so close() cannot wait on it.
  await Promise.all([h2c?.close(), http1?.close()])
  await Promise.all([h2Fetch?.close(), h1Fetch?.close()])
})

const chatUrl = (upstream: TestUpstream): string => `${upstream.url}/chat/completions`

/** The stream's bytes with the `created` seconds blanked: two requests can straddle a second. */
const comparable = (text: string): string => text.replace(/"created":\d+/g, '"created":0')

describe('the http2 option', () => {
  test.each([
    ['yes', 'Expected `http2` to be a boolean, got `yes` (string)'],
    [1, 'Expected `http2` to be a boolean, got `1` (number)'],
    [null, 'Expected `http2` to be a boolean, got `null` (null)'],
  ])('http2: %j is rejected naming the option and the value', (value, message) => {
    expect(() => createUpstreamFetch({ http2: value as unknown as boolean })).toThrow(message)
  })

  test('http2: false and absent are HTTP/1.1 (the h2c upstream sees no request it can parse)', async () => {
    const f = createUpstreamFetch({ http2: false })
    try {
      const error = await f(chatUrl(h2c), chatInit({ id: 'h1-to-h2c' })).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(TypeError)
    } finally {
      await f.close()
    }
  })
})

describe('over h2c', () => {
  test('a stream arrives chunk by chunk with the bytes, status and headers HTTP/1.1 gets', async () => {
    const response = await h2Fetch(chatUrl(h2c), chatInit({ id: 'h2-stream', chunks: 5, delay: 20 }))
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toBe('text/event-stream; charset=utf-8')
    expect(response.headers.get('x-request-id')).toBe('h2-stream')
    const reader = response.body!.getReader()
    const first = await reader.read()
    // The upstream still has writes 20 ms apart to go: the first chunk did not wait for the end.
    expect(h2c.attempts('h2-stream')[0]!.closedAt).toBeUndefined()
    let text = Buffer.from(first.value!).toString('utf8')
    for (let next = await reader.read(); !next.done; next = await reader.read()) text += Buffer.from(next.value).toString()
    const reference = await h1Fetch(chatUrl(http1), chatInit({ id: 'h2-stream', chunks: 5, delay: 20 }))
    expect(comparable(text)).toBe(comparable(await reference.text()))
    expect((await h2c.waitForClosed('h2-stream')).outcome).toBe('completed')
  })

  test(`${STREAMS_PER_CONNECTION * 2} concurrent streams share 2 connections, all complete`, async () => {
    // A fresh fetch: no connection left from the other tests.
    const f = createUpstreamFetch({ http2: true })
    try {
      const before = h2c.acceptedConnections()
      const count = STREAMS_PER_CONNECTION * 2
      const texts = await Promise.all(
        Array.from({ length: count }, async (_, index) => {
          const response = await f(chatUrl(h2c), chatInit({ id: `h2-many-${index}`, chunks: 3, delay: 50 }))
          return response.text()
        }),
      )
      expect(texts.filter((text) => text.endsWith('data: [DONE]\n\n'))).toHaveLength(count)
      // All at once (a burst, before any connection was up), on as many connections as 100 streams fill.
      expect(h2c.acceptedConnections() - before).toBe(2)
    } finally {
      await f.close()
    }
  })

  test("the body's cancel() mid-stream resets the stalled upstream's stream quickly; the connection stays", async () => {
    const response = await h2Fetch(chatUrl(h2c), chatInit({ id: 'h2-cancel', chunks: 5, stallAfter: 2 }))
    const reader = response.body!.getReader()
    await h2c.waitFor('h2-cancel', (record) => record.chunksWritten === 2)
    await reader.read()
    const open = h2c.openConnections()
    const cancelledAt = sharedNow()
    await reader.cancel('gone')
    const closed = await h2c.waitForClosed('h2-cancel')
    expect(closed.outcome).toBe('aborted')
    // Generous for a shared 2-core machine; a cancel that waited for the next chunk would never get here.
    expect(closed.closedAt! - cancelledAt).toBeLessThan(500)
    // Only the stream went: the connection carries the next request.
    expect(h2c.openConnections()).toBe(open)
    expect(await (await h2Fetch(chatUrl(h2c), chatInit({ id: 'h2-after-cancel', chunks: 1 }))).text()).toContain('[DONE]')
  })

  test('aborting mid-body: the pending read rejects with the exact reason, the upstream stream closes', async () => {
    const controller = new AbortController()
    const response = await h2Fetch(chatUrl(h2c), chatInit({ id: 'h2-abort', stallAfter: 1 }, { signal: controller.signal }))
    const reader = response.body!.getReader()
    await reader.read()
    const pending = reader.read()
    const reason = new Error('client left')
    controller.abort(reason)
    await expect(pending).rejects.toBe(reason)
    expect((await h2c.waitForClosed('h2-abort')).outcome).toBe('aborted')
  })

  test.each([
    ['503 with Retry-After', { fail: 503, retryAfter: '2' }],
    ['429', { fail: 429 }],
    ['400', { fail: 400 }],
  ])('an error status before the first byte (%s): the same status, headers and body as HTTP/1.1', async (_, fields) => {
    const [h2, h1] = await Promise.all([
      h2Fetch(chatUrl(h2c), chatInit({ id: `h2-fail-${fields.fail}`, ...fields })),
      h1Fetch(chatUrl(http1), chatInit({ id: `h2-fail-${fields.fail}`, ...fields })),
    ])
    expect(h2.status).toBe(h1.status)
    expect(h2.headers.get('retry-after')).toBe(h1.headers.get('retry-after'))
    expect(h2.headers.get('content-type')).toBe(h1.headers.get('content-type'))
    expect(await h2.text()).toBe(await h1.text())
  })

  test('a refused connection rejects with a TypeError whose cause says why, as over HTTP/1.1', async () => {
    const dead = createServer()
    await new Promise<void>((resolve) => dead.listen(0, '127.0.0.1', resolve))
    const { port } = dead.address() as AddressInfo
    await new Promise<void>((resolve) => dead.close(() => resolve()))
    const error = await h2Fetch(`http://127.0.0.1:${port}/v1/chat/completions`, chatInit({})).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(TypeError)
    expect(error).toMatchObject({ message: 'fetch failed', cause: { code: 'ECONNREFUSED' } })
  })

  test('an HTTP/1.1-only upstream fails the request at once (a TypeError), it does not hang', async () => {
    const startedAt = Date.now()
    const error = await h2Fetch(chatUrl(http1), chatInit({ id: 'h2-to-h1' })).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(TypeError)
    expect(error).toMatchObject({ message: 'fetch failed' })
    expect(Date.now() - startedAt).toBeLessThan(2_000)
  })
})

/** An SSE answer in three writes, and the HTTP version the server saw. */
function sseHandler(versions: string[]) {
  return (request: { httpVersion: string }, response: import('node:http').ServerResponse): void => {
    versions.push(request.httpVersion)
    response.writeHead(200, { 'content-type': 'text/event-stream' })
    response.write('data: 1\n\n')
    setTimeout(() => response.write('data: 2\n\n'), 5)
    setTimeout(() => response.end('data: [DONE]\n\n'), 10)
  }
}

const certificate: TestCertificate | undefined = makeTestCertificate()

describe.skipIf(certificate === undefined)('over https (skipped where openssl made no certificate)', () => {
  const versions: string[] = []
  let h2s: Http2SecureServer
  let h1s: HttpsServer
  const origin = (server: { address(): unknown }): string =>
    `https://127.0.0.1:${(server.address() as AddressInfo).port}`
  beforeAll(async () => {
    const tls = { cert: certificate!.cert, key: certificate!.key }
    h2s = createSecureServer(tls, sseHandler(versions) as never)
    h1s = createHttpsServer(tls, sseHandler(versions) as never)
    const listen = (server: Http2SecureServer | HttpsServer): Promise<void> =>
      new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
    await Promise.all([listen(h2s), listen(h1s)])
  })
  afterAll(() => {
    h2s?.close()
    h1s?.close()
  })

  test('h2 by ALPN with a CA from caCerts: the whole stream, over HTTP/2', async () => {
    const f = createUpstreamFetch({ http2: true, caCerts: [certificate!.ca] })
    try {
      const response = await f(`${origin(h2s)}/sse`, { redirect: 'error' })
      expect(await response.text()).toBe('data: 1\n\ndata: 2\n\ndata: [DONE]\n\n')
      expect(versions.at(-1)).toBe('2.0')
    } finally {
      await f.close()
    }
  })

  test('an https upstream that picks HTTP/1.1 is refused with a message that says so', async () => {
    const f = createUpstreamFetch({ http2: true, caCerts: [certificate!.ca] })
    try {
      const error = await f(`${origin(h1s)}/sse`, { redirect: 'error' }).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(TypeError)
      const cause = String((error as { cause?: unknown }).cause)
      expect(cause).toMatch(/did not negotiate HTTP\/2 \(ALPN: (none|http\/1\.1)\)/)
    } finally {
      await f.close()
    }
  })

  test('caCerts is trusted on HTTP/1.1 too; without it the certificate is refused', async () => {
    const trusting = createUpstreamFetch({ caCerts: [certificate!.ca] })
    const plain = createUpstreamFetch()
    try {
      const response = await trusting(`${origin(h1s)}/sse`, { redirect: 'error' })
      expect(await response.text()).toContain('data: [DONE]')
      expect(versions.at(-1)).toBe('1.1')
      const error = await plain(`${origin(h1s)}/sse`, { redirect: 'error' }).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(TypeError)
      expect((error as { cause?: { code?: string } }).cause?.code).toMatch(/CERT|SIGNED|VERIFY/)
    } finally {
      await Promise.all([trusting.close(), plain.close()])
    }
  })

  test.each([
    ['x', 'Expected `caCerts` to be an array of PEM strings, got `x` (string)'],
    [[1], 'Expected `caCerts` to be an array of PEM strings, got `1` (object)'],
  ])('caCerts: %j is rejected naming the option and the value', (value, message) => {
    expect(() => createUpstreamFetch({ caCerts: value as unknown as string[] })).toThrow(message)
  })
})

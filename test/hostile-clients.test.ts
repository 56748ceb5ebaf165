/**
 * Slow and hostile clients against the real `sluice` binary (and, where the binary's defaults would make a test
 * wait half a minute, against the same gateway on the Node adapter with short timeouts), all in front of the
 * fault-injecting test upstream. After every test the binary must still serve a normal stream intact.
 *
 * - A client that stops reading: the upstream is paused (its record waits for 'drain' and its bytesWritten
 *   stops), the gateway's memory stays far below what the streams would need if buffered, and a reader that
 *   resumes gets every byte.
 * - Slowloris: headers dripped forever are cut by the binary's headersTimeout (10 s default, 408); headers and
 *   bodies dripped on the adapter with headersTimeout 1 s / requestTimeout 2 s are cut the same way — the binary
 *   exposes no flag for them, and its requestTimeout (30 s) would make the body case take half a minute.
 * - 10 000 idle connections: the binary stays healthy and streams meanwhile, closes all of them itself (408 at
 *   headersTimeout), and its fds and memory come back down.
 * - Bodies exactly at / just over --body-limit (413 with and without Content-Length), invalid UTF-8 (400),
 *   JSON nested past 64 levels (400), and header injection / request smuggling shapes (400 from Node's HTTP
 *   parser): none of them ever reaches the upstream.
 */
import { randomBytes } from 'node:crypto'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import { parseCli } from '../adapters/node/cli-options.ts'
import { type NodeServer, serve } from '../adapters/node/server.ts'
import { type ConfiguredGateway, createGatewayFromConfig } from '../core/gateway/from-config.ts'
import { rawRequest } from './_contract.ts'
import { type Binary, startBinary } from './chaos/binary.ts'
import { streamedContent } from './chaos/classify.ts'
import { eventually } from './chaos/leaks.ts'
import { exchange, head, openSocket, type RawReply } from './chaos/raw-http.ts'
import { expectedContent, mockModel } from './upstream/behaviour.ts'
import { readSse } from './upstream/harness.ts'
import { startUpstream, type TestUpstream } from './upstream/server.ts'

const UPSTREAM_KEY = `sk-hostile-${randomBytes(12).toString('hex')}`
const BODY_LIMIT = 64 * 1024
const MiB = 1024 * 1024
/** The binary's default headersTimeout (adapters/node/server.ts). */
const BINARY_HEADERS_TIMEOUT_MS = 10_000

let upstream: TestUpstream
let binary: Binary
/** Started first, checked last: a header slowloris against the binary's default headersTimeout. */
let binarySlowloris: Promise<RawReply>

type Fields = Parameters<typeof mockModel>[0]
let sequence = 0
const newId = (label: string): string => `${label}-${++sequence}`
const chatBody = (fields: Fields, stream = true): string =>
  JSON.stringify({ model: mockModel(fields), stream, messages: [{ role: 'user', content: 'hi' }] })

function post(baseUrl: string, body: BodyInit, init: RequestInit = {}): Promise<Response> {
  return fetch(`${baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    ...init,
  })
}

/** A normal stream through `baseUrl` arrives whole: the gateway is healthy. */
async function expectHealthy(baseUrl: string): Promise<void> {
  const health = await fetch(`${baseUrl}/healthz`)
  expect(health.status).toBe(200)
  await health.body?.cancel()
  const read = await readSse(await post(baseUrl, chatBody({ id: newId('healthy'), chunks: 5, delay: 1 })))
  expect(read.error).toBeUndefined()
  expect(streamedContent(read.events.map((event) => event.data))).toBe(expectedContent(5))
  expect(read.events.at(-1)?.data).toBe('[DONE]')
}

beforeAll(async () => {
  upstream = await startUpstream({ apiKey: UPSTREAM_KEY })
  binary = await startBinary({
    upstreamKey: UPSTREAM_KEY,
    args: ['--upstream', upstream.url, '--body-limit', '64kb', '--idle-timeout', '60s', '--concurrency', '64'],
  })
  const host = new URL(binary.url).host
  // One header line every second, never the blank line that ends the head.
  const drip = Array.from({ length: 30 }, (_, index) => `X-Drip-${index}: ${index}\r\n`)
  binarySlowloris = exchange(binary.url, [`POST /v1/chat/completions HTTP/1.1\r\nHost: ${host}\r\n`, ...drip], {
    everyMs: 1_000,
    timeoutMs: 30_000,
  })
})

afterAll(async () => {
  await binary?.stop('SIGKILL')
  await upstream?.close()
})

afterEach(async () => {
  expect(binary.alive()).toBe(true)
  await expectHealthy(binary.url)
})

describe('a client that stops reading', () => {
  test(
    'the upstream is paused, the gateway buffers a bounded amount, and a reader that resumes gets every byte',
    async () => {
      const rssBefore = binary.rss()
      // 8 raw sockets that never read, each asking for ~68 MiB (16 000 events of ~4.2 KiB)…
      const stalled = await Promise.all(
        Array.from({ length: 8 }, async () => {
          const id = newId('no-read')
          const connection = await rawRequest(binary.url, '/v1/chat/completions', {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: chatBody({ id, chunks: 16_000, pad: 4_000 }),
          })
          connection.socket.pause()
          return { id, connection }
        }),
      )
      // …and one fetch() reader that stops reading after the first chunk and resumes later (~17 MiB).
      const resumedId = newId('resume')
      const resumed = await post(binary.url, chatBody({ id: resumedId, chunks: 4_000, pad: 4_000 }))
      const reader = resumed.body!.getReader()
      const first = await reader.read()

      // Backpressure reaches each upstream: it waits for 'drain' and its byte count stops moving.
      const ids = [...stalled.map(({ id }) => id), resumedId]
      const written = (): number[] => ids.map((id) => upstream.attempts(id)[0]?.bytesWritten ?? 0)
      let previous = written()
      const settled = await eventually(
        () => {
          const now = written()
          const still = now.every((bytes, index) => bytes === previous[index])
          previous = now
          return still && ids.every((id) => upstream.attempts(id)[0]?.paused === true)
        },
        20_000,
        500,
      )
      expect(settled, `bytesWritten ${written()}`).toBe(true)
      const paused = ids.map((id) => upstream.attempts(id)[0]!)
      for (const record of paused) {
        expect(record.drainWaits).toBeGreaterThan(0)
        expect(record.outcome).toBeUndefined()
        // Only socket buffers' worth left the upstream: far from the stream's size.
        expect(record.bytesWritten).toBeLessThan(24 * MiB)
      }
      // Unbounded buffering would need 8 × 68 + 17 ≈ 560 MiB; the gateway grew by a fraction of that.
      const growth = binary.rss() - rssBefore
      const figures =
        `upstream bytesWritten ${paused.map((record) => (record.bytesWritten / MiB).toFixed(1)).join('/')} MiB, ` +
        `gateway rss +${(growth / MiB).toFixed(1)} MiB`
      console.log(`9 paused readers: ${figures}`)
      expect(growth, figures).toBeLessThan(160 * MiB)

      // The resumed reader gets the whole stream, in order, nothing lost or repeated.
      const rest = await readSse(
        new Response(
          new ReadableStream({
            start(controller) {
              controller.enqueue(first.value!)
            },
            async pull(controller) {
              const { done, value } = await reader.read()
              if (done) controller.close()
              else controller.enqueue(value)
            },
          }),
        ),
      )
      expect(rest.error).toBeUndefined()
      expect(streamedContent(rest.events.map((event) => event.data))).toBe(expectedContent(4_000, 4_000))
      expect(rest.events.at(-1)?.data).toBe('[DONE]')

      // Closing the stalled readers closes their upstream connections.
      for (const { connection } of stalled) connection.close()
      for (const { id } of stalled) expect((await upstream.waitForClosed(id, 10_000)).outcome).toBe('aborted')
    },
    90_000,
  )
})

describe('slowloris', () => {
  let adapter: NodeServer
  let adapterUrl: string
  let configured: ConfiguredGateway
  const HEADERS_TIMEOUT_MS = 1_000
  const REQUEST_TIMEOUT_MS = 2_000

  beforeAll(async () => {
    // The binary's gateway, built from the binary's own flags, on the Node adapter with short timeouts.
    const command = parseCli(['--upstream', upstream.url, '--body-limit', '64kb'], { OPENAI_API_KEY: UPSTREAM_KEY })
    if (command.kind !== 'serve') throw new Error('expected serve flags')
    configured = await createGatewayFromConfig(command.config)
    adapter = serve(configured.gateway.fetch, {
      port: 0,
      headersTimeout: HEADERS_TIMEOUT_MS,
      requestTimeout: REQUEST_TIMEOUT_MS,
      keepAliveTimeout: 500,
    }) as NodeServer
    adapterUrl = (await adapter.ready()).url
  })
  afterAll(async () => {
    await configured?.shutdown(adapter, 1_000)
  })

  test('adapter: headers dripped forever are cut at headersTimeout (408), others served meanwhile', async () => {
    const host = new URL(adapterUrl).host
    const drip = Array.from({ length: 40 }, (_, index) => `X-Drip-${index}: ${index}\r\n`)
    const dripping = exchange(adapterUrl, [`GET /healthz HTTP/1.1\r\nHost: ${host}\r\n`, ...drip], {
      everyMs: 100,
      timeoutMs: 10_000,
    })
    await expectHealthy(adapterUrl)
    const reply = await dripping
    expect(reply.closedByServer).toBe(true)
    expect(reply.status).toBe(408)
    expect(reply.elapsedMs).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 50)
  })

  test('adapter: a body dripped forever is cut at requestTimeout, and never reaches the upstream', async () => {
    const before = upstream.requests.length
    const body = chatBody({ id: newId('slow-body'), chunks: 1 })
    const host = new URL(adapterUrl).host
    const requestHead = head('POST /v1/chat/completions HTTP/1.1', [
      `Host: ${host}`,
      'Content-Type: application/json',
      `Content-Length: ${body.length}`,
    ])
    // One byte every 100 ms: the whole body would take ~8 s.
    const dripping = exchange(adapterUrl, [requestHead, ...body.split('')], { everyMs: 100, timeoutMs: 15_000 })
    await expectHealthy(adapterUrl)
    const reply = await dripping
    expect(reply.closedByServer).toBe(true)
    expect(reply.elapsedMs).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - 50)
    expect(reply.elapsedMs).toBeLessThan(body.length * 100)
    expect(upstream.requests.slice(before).filter((record) => record.id.startsWith('slow-body'))).toEqual([])
  })

  test(
    `binary: headers dripped forever are cut at its default headersTimeout (${BINARY_HEADERS_TIMEOUT_MS} ms)`,
    async () => {
      const reply = await binarySlowloris
      expect(reply.closedByServer).toBe(true)
      expect(reply.status).toBe(408)
      expect(reply.elapsedMs).toBeGreaterThanOrEqual(BINARY_HEADERS_TIMEOUT_MS - 100)
    },
    40_000,
  )
})

describe('10 000 idle connections', () => {
  test(
    'the binary stays healthy and streams meanwhile, closes them all itself, and its fds and memory come back down',
    async () => {
      const COUNT = 10_000
      const fdsBefore = binary.fds()
      const rssBefore = binary.rss()
      const sockets = []
      let closed = 0
      let timedOut = 0
      let allClosed!: () => void
      const everyClosed = new Promise<void>((resolve) => (allClosed = resolve))
      // Batches: the listen backlog (511) would drop SYNs if all 10 000 connected at once.
      for (let opened = 0; opened < COUNT; opened += 250) {
        const batch = await Promise.all(
          Array.from({ length: Math.min(250, COUNT - opened) }, () => openSocket(binary.url)),
        )
        for (const socket of batch) {
          socket.on('error', () => {})
          // Read (a socket nobody reads never notices the server's FIN): all it may receive is a 408.
          socket.on('data', (data: Buffer) => {
            if (data.toString('latin1').startsWith('HTTP/1.1 408 ')) timedOut++
          })
          socket.once('close', () => {
            if (++closed === COUNT) allClosed()
          })
        }
        sockets.push(...batch)
      }
      // Every connection was accepted: the binary holds an fd for each (fdsBefore may include sockets of the
      // previous test that are still closing, so it is not added here).
      expect(await eventually(() => binary.fds() >= COUNT, 10_000)).toBe(true)
      const rssHolding = binary.rss()
      await expectHealthy(binary.url)
      expect(closed).toBe(0)

      // Nobody sends a byte: the binary's headersTimeout closes every one of them (we never close one).
      await everyClosed
      expect(timedOut).toBe(COUNT)
      expect(await eventually(() => binary.fds() <= fdsBefore + 5, 10_000)).toBe(true)
      // ~7 KiB per idle connection observed (socket, parser, JS objects); 20 KiB each is the bound, a buffer per
      // connection (64 KiB reads) would be far past it.
      const perConnection = (rssHolding - rssBefore) / COUNT
      console.log(
        `${COUNT} idle connections: fds ${fdsBefore} → ≥${COUNT} → ${binary.fds()}, ` +
          `rss +${((rssHolding - rssBefore) / MiB).toFixed(1)} MiB holding, +${
            ((binary.rss() - rssBefore) / MiB).toFixed(1)
          } MiB after`,
      )
      expect(perConnection, `${(perConnection / 1024).toFixed(1)} KiB per idle connection`).toBeLessThan(20 * 1024)
      expect(binary.rss() - rssBefore).toBeLessThan(COUNT * 20 * 1024)
    },
    90_000,
  )
})

describe('bodies, encodings, nesting', () => {
  /** A valid chat body of exactly `bytes` bytes (padded inside a message's content). */
  function bodyOfSize(id: string, bytes: number): string {
    const bare = chatBody({ id, chunks: 2 }).replace('"content":"hi"', '"content":""')
    const body = bare.replace('"content":""', `"content":"${'x'.repeat(bytes - Buffer.byteLength(bare))}"`)
    expect(Buffer.byteLength(body)).toBe(bytes)
    return body
  }
  const chunked = (body: string): string[] => {
    const pieces = []
    for (let at = 0; at < body.length; at += 10_000) {
      const piece = body.slice(at, at + 10_000)
      pieces.push(`${Buffer.byteLength(piece).toString(16)}\r\n${piece}\r\n`)
    }
    return [...pieces, '0\r\n\r\n']
  }
  const host = (): string => new URL(binary.url).host

  test.each(['content-length', 'chunked'] as const)(
    '%s: a body of exactly --body-limit streams, one byte more is 413 and never reaches the upstream',
    async (framing) => {
      const send = (body: string): Promise<RawReply> => {
        const lines = [`Host: ${host()}`, 'Content-Type: application/json', 'Connection: close']
        if (framing === 'content-length') {
          return exchange(
            binary.url,
            head('POST /v1/chat/completions HTTP/1.1', [...lines, `Content-Length: ${body.length}`]) + body,
          )
        }
        const requestHead = head('POST /v1/chat/completions HTTP/1.1', [...lines, 'Transfer-Encoding: chunked'])
        return exchange(binary.url, [requestHead, ...chunked(body)], { everyMs: 5 })
      }
      const fits = newId('limit-fits')
      const atLimit = await send(bodyOfSize(fits, BODY_LIMIT))
      expect(atLimit.status).toBe(200)
      expect(atLimit.text).toContain('data: [DONE]')
      expect(upstream.attempts(fits)).toHaveLength(1)

      const over = newId('limit-over')
      const overLimit = await send(bodyOfSize(over, BODY_LIMIT + 1))
      expect(overLimit.status).toBe(413)
      expect(overLimit.text).toContain('"code":"body_too_large"')
      expect(upstream.attempts(over)).toEqual([])
    },
  )

  test('invalid UTF-8 is 400 invalid_encoding, never decoded with U+FFFD into the upstream request', async () => {
    const id = newId('utf8')
    const [before, after] = chatBody({ id, chunks: 1 }).split('"hi"')
    const cases = [
      [0xff], // never valid
      [0xc3], // truncated 2-byte sequence
      [0xed, 0xa0, 0x80], // UTF-16 surrogate
      [0xc0, 0xaf], // overlong '/'
    ]
    for (const bytes of cases) {
      const body = Buffer.concat([Buffer.from(`${before}"`), Buffer.from(bytes), Buffer.from(`"${after}`)])
      const response = await post(binary.url, body)
      expect(response.status).toBe(400)
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe('invalid_encoding')
    }
    expect(upstream.attempts(id)).toEqual([])
  })

  test('JSON nested past 64 levels is 400 json_too_deep; 30 000 levels neither crash nor hang it', async () => {
    const id = newId('deep')
    const nested = (depth: number): string =>
      JSON.stringify({ model: mockModel({ id, chunks: 1 }), messages: [{ role: 'user', content: 'x' }], extra: 0 })
        .replace('"extra":0', `"extra":${'['.repeat(depth)}${']'.repeat(depth)}`)
    const ok = await post(binary.url, nested(60))
    expect(ok.status).toBe(200)
    await ok.body?.cancel()
    const deep = await post(binary.url, nested(64))
    expect(deep.status).toBe(400)
    expect(((await deep.json()) as { error: { code: string } }).error.code).toBe('json_too_deep')
    const absurd = await post(binary.url, nested(30_000))
    expect(absurd.status).toBe(400)
    expect(['json_too_deep', 'invalid_json']).toContain(
      ((await absurd.json()) as { error: { code: string } }).error.code,
    )
    expect(upstream.attempts(id)).toHaveLength(1)
  })
})

describe('header injection and request smuggling', () => {
  const body = chatBody({ id: 'smuggled', chunks: 1 })
  const P = 'POST /v1/chat/completions HTTP/1.1'
  const cases = (host: string): Record<string, string> => {
    const json = `Content-Type: application/json`
    const length = `Content-Length: ${body.length}`
    const inner = `${P}\r\nHost: ${host}\r\n${json}\r\n${length}\r\n\r\n${body}`
    return {
      'CR inside a header value':
        `${P}\r\nHost: ${host}\r\nX-Test: a\rInjected: b\r\n${json}\r\n${length}\r\n\r\n${body}`,
      'LF inside a header value':
        `${P}\r\nHost: ${host}\r\nX-Test: a\nInjected: b\r\n${json}\r\n${length}\r\n\r\n${body}`,
      'NUL inside a header value': `${P}\r\nHost: ${host}\r\nX-Test: a\u0000b\r\n${json}\r\n${length}\r\n\r\n${body}`,
      'obs-fold continuation line':
        `${P}\r\nHost: ${host}\r\nX-Test: a\r\n Injected: b\r\n${json}\r\n${length}\r\n\r\n${body}`,
      'duplicate Content-Length, different values':
        `${P}\r\nHost: ${host}\r\n${json}\r\n${length}\r\nContent-Length: 5\r\n\r\n${body}`,
      'duplicate Content-Length, same value':
        `${P}\r\nHost: ${host}\r\n${json}\r\n${length}\r\n${length}\r\n\r\n${body}`,
      'CL.TE: Content-Length and chunked, a request hidden after the 0-chunk':
        `${P}\r\nHost: ${host}\r\n${json}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${inner}`,
      'TE.CL: chunked and a short Content-Length':
        `${P}\r\nHost: ${host}\r\n${json}\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n${
          body.length.toString(16)
        }\r\n${body}\r\n0\r\n\r\n`,
      'TE.TE: a second, bogus Transfer-Encoding': `${P}\r\nHost: ${host}\r\n${json}\r\n` +
        `Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n${inner}`,
      'Transfer-Encoding: xchunked':
        `${P}\r\nHost: ${host}\r\n${json}\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n${inner}`,
      'Transfer-Encoding: chunked, identity':
        `${P}\r\nHost: ${host}\r\n${json}\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n${inner}`,
      'space before the colon': `${P}\r\nHost: ${host}\r\n${json}\r\nContent-Length : ${body.length}\r\n\r\n${body}`,
      'Content-Length: +N': `${P}\r\nHost: ${host}\r\n${json}\r\nContent-Length: +${body.length}\r\n\r\n${body}`,
      'bare LF line endings': `${P}\nHost: ${host}\n${json}\n${length}\n\n${body}`,
      'invalid chunk size':
        `${P}\r\nHost: ${host}\r\n${json}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n${body}\r\n0\r\n\r\n`,
      'no Host header': `${P}\r\n${json}\r\n${length}\r\n\r\n${body}`,
      'HTTP/1.2': `POST /v1/chat/completions HTTP/1.2\r\nHost: ${host}\r\n${json}\r\n${length}\r\n\r\n${body}`,
    }
  }

  test('each is refused with 400 by the HTTP parser, the connection closed, nothing forwarded', async () => {
    const host = new URL(binary.url).host
    const before = upstream.requests.length
    for (const [name, raw] of Object.entries(cases(host))) {
      const reply = await exchange(binary.url, raw)
      expect({ name, status: reply.status, closedByServer: reply.closedByServer }).toEqual({
        name,
        status: 400,
        closedByServer: true,
      })
    }
    const huge = await exchange(binary.url, `${P}\r\nHost: ${host}\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`)
    expect(huge.status).toBe(431)
    expect(upstream.requests.length).toBe(before)
    expect(upstream.attempts('smuggled')).toEqual([])
  })

  test("client headers are never forwarded upstream: only the gateway's own, with the upstream key", async () => {
    const id = newId('headers')
    const response = await post(binary.url, chatBody({ id, chunks: 1 }), {
      headers: {
        'content-type': 'application/json',
        'x-injected': 'evil',
        cookie: 'session=1',
        'x-forwarded-for': '6.6.6.6',
        authorization: 'Bearer client-supplied',
      },
    })
    expect(response.status).toBe(200)
    await response.text()
    const [record] = upstream.attempts(id)
    expect(record!.authorization).toBe(`Bearer ${UPSTREAM_KEY}`)
    const forwarded = Object.keys(record!.headers)
    for (const name of ['x-injected', 'cookie', 'x-forwarded-for']) expect(forwarded).not.toContain(name)
  })
})

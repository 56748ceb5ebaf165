// The Deno upstream fetch (adapters/deno/upstream-fetch.ts) in a real deno process (test/scenarios/
// deno-upstream-fetch.ts), against the test upstream for streams, cancellation, aborts and cuts, and a raw
// node:net server here for what the test upstream cannot send (redirects, 204, HEAD, 103, gzip, a response
// without framing, repeated headers, a keep-alive connection the server drops while it is idle).
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https'
import { createServer, type Server, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import { gzipSync } from 'node:zlib'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { runScenario } from './_runtimes.ts'
import { makeTestCertificate } from './_tls.ts'
import { expectedContent } from './upstream/behaviour.ts'
import { startUpstream, type TestUpstream } from './upstream/server.ts'

interface Outcome {
  value?: unknown
  error?: { name: string; message: string }
}

interface Verdict {
  error?: string
  stream: { status: number; type: string; text: string }
  again: string
  cancelledAt: number
  abortedAt: number
  midBody: Outcome
  beforeHeaders: Outcome
  beforeHeadersMs: number
  cut: Outcome
  lengths: string[]
  head: { status: number; body: boolean; length: string }
  noContent: { status: number; body: boolean }
  closeDelimited: string
  earlyHints: string
  gzip: string
  cookies: string[]
  cookiesBody: string
  redirect: Outcome
  followed: string
  stale: string[]
  refused: Outcome
  tls?: string[]
}

const ok = (body: string, extra = ''): string =>
  `HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`

/** The raw server's answer to `method path`, and whether it then closes the connection (and when). */
function answer(method: string, path: string): { bytes: Buffer; close?: number } {
  switch (path) {
    case '/length':
      return { bytes: Buffer.from(method === 'HEAD' ? ok('hello').replace(/hello$/, '') : ok('hello')) }
    case '/no-content':
      return { bytes: Buffer.from('HTTP/1.1 204 No Content\r\n\r\n') }
    case '/close-delimited':
      return { bytes: Buffer.from('HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end'), close: 0 }
    case '/early-hints': {
      // Two interim responses and the final one in one write: all must be read from what is already buffered.
      const interim = 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>; rel=preload\r\n\r\n'
      return { bytes: Buffer.from(`${interim}${ok('final')}`) }
    }
    case '/gzip': {
      const body = gzipSync('unasked gzip')
      const head = `HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: ${body.length}\r\n\r\n`
      return { bytes: Buffer.concat([Buffer.from(head), body]) }
    }
    case '/cookies':
      return { bytes: Buffer.from(ok('c', 'set-cookie: a=1\r\nset-cookie: b=2\r\n')) }
    case '/redirect':
      return { bytes: Buffer.from('HTTP/1.1 302 Found\r\nlocation: /length\r\ncontent-length: 0\r\n\r\n') }
    case '/drop-after':
      return { bytes: Buffer.from(ok('dropped soon')), close: 30 }
    default:
      return { bytes: Buffer.from('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n') }
  }
}

/** A keep-alive HTTP/1.1 server that answers bodiless requests from `answer()`, byte for byte. */
function startRawServer(): Promise<{ server: Server; origin: string; connections: () => number }> {
  let connections = 0
  const server = createServer((socket: Socket) => {
    connections++
    let pending = ''
    socket.on('error', () => {})
    socket.on('data', (data) => {
      pending += data.toString('latin1')
      for (let end = pending.indexOf('\r\n\r\n'); end !== -1; end = pending.indexOf('\r\n\r\n')) {
        const [method = '', path = ''] = pending.slice(0, end).split(' ')
        pending = pending.slice(end + 4)
        const { bytes, close } = answer(method, path)
        socket.write(bytes)
        if (close !== undefined) setTimeout(() => socket.end(), close)
      }
    })
  })
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo
      resolve({ server, origin: `http://127.0.0.1:${port}`, connections: () => connections })
    })
  })
}

/** An https server with a throwaway certificate for 127.0.0.1 (./_tls.ts), streaming a chunked body in three writes. */
async function startHttpsServer(): Promise<{ server: HttpsServer; origin: string; ca: string } | undefined> {
  const certificate = makeTestCertificate()
  if (certificate === undefined) return undefined
  const server = createHttpsServer(certificate, (_request, response) => {
    response.writeHead(200, { 'content-type': 'text/event-stream' })
    response.write('data: 1\n\n')
    setTimeout(() => response.write('data: 2\n\n'), 5)
    setTimeout(() => response.end('data: [DONE]\n\n'), 10)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, origin: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, ca: certificate.ca }
}

let upstream: TestUpstream
let raw: Awaited<ReturnType<typeof startRawServer>>
let https: Awaited<ReturnType<typeof startHttpsServer>>
let deadOrigin: string
beforeAll(async () => {
  upstream = await startUpstream()
  raw = await startRawServer()
  https = await startHttpsServer()
  // A port nobody listens on: bind one, note it, close it.
  const dead = createServer()
  await new Promise<void>((resolve) => dead.listen(0, '127.0.0.1', resolve))
  deadOrigin = `http://127.0.0.1:${(dead.address() as AddressInfo).port}`
  await new Promise((resolve) => dead.close(resolve))
})
afterAll(async () => {
  await upstream?.close()
  raw?.server.close()
  https?.server.close()
})

test('deno: streams, reuses connections, cancels and aborts at once, frames and decodes like fetch', async () => {
  const { verdict, stderr } = await runScenario<Verdict>('deno', 'test/scenarios/deno-upstream-fetch.ts', {
    args: [upstream.url, raw.origin, deadOrigin, ...(https ? [https.origin] : [])],
    env: https ? { SLUICE_TEST_CA: https.ca } : {},
  })
  expect(verdict.error, stderr).toBeUndefined()

  expect(verdict.stream.status).toBe(200)
  expect(verdict.stream.type).toContain('text/event-stream')
  const contents = [...verdict.stream.text.matchAll(/"content":"([^"]*)"/g)].map((match) => match[1]).join('')
  expect(contents).toBe(expectedContent(30))
  expect(verdict.stream.text.trimEnd().endsWith('data: [DONE]')).toBe(true)
  expect(verdict.again).toContain('data: [DONE]')
  // Both streams and the ones after them came over kept-alive connections: fewer connections than requests.
  expect(upstream.attempts('df-again')).toHaveLength(1)

  // Cancel and abort reached the stalled upstream within 50 ms (same clock: sharedNow()).
  const cancelled = await upstream.waitForClosed('df-cancel')
  expect(cancelled.outcome).toBe('aborted')
  expect(cancelled.closedAt! - verdict.cancelledAt).toBeLessThan(50)
  const aborted = await upstream.waitForClosed('df-abort')
  expect(aborted.closedAt! - verdict.abortedAt).toBeLessThan(50)
  expect(verdict.midBody).toEqual({ error: { name: 'Error', message: 'client left' } })
  expect(verdict.beforeHeaders).toEqual({ error: { name: 'AbortError', message: 'stop' } })
  expect(verdict.beforeHeadersMs).toBeLessThan(1_000)
  expect(verdict.cut.error?.name).toBe('TypeError')

  expect(verdict.lengths).toEqual(['hello', 'hello', 'hello'])
  expect(verdict.head).toEqual({ status: 200, body: true, length: '5' })
  expect(verdict.noContent).toEqual({ status: 204, body: true })
  expect(verdict.closeDelimited).toBe('until the end')
  expect(verdict.earlyHints).toBe('final')
  expect(verdict.gzip).toBe('unasked gzip')
  expect(verdict.cookies).toEqual(['a=1', 'b=2'])
  expect(verdict.cookiesBody).toBe('c')
  expect(verdict.redirect.error).toMatchObject({ name: 'TypeError', message: 'fetch failed' })
  expect(verdict.followed).toBe('hello')
  expect(verdict.stale).toEqual(['dropped soon', 'hello'])
  expect(verdict.refused.error).toMatchObject({ name: 'TypeError', message: 'fetch failed' })
  // Keep-alive: every bodiless call on one connection, except the close-delimited one, the one dropped after its
  // response, the fresh one after it, and the global fetch's (redirect: 'follow').
  expect(raw.connections()).toBeLessThanOrEqual(5)
  // https (skipped where no openssl made a certificate).
  const sse = 'data: 1\n\ndata: 2\n\ndata: [DONE]\n\n'
  if (https) expect(verdict.tls).toEqual([sse, sse])
})

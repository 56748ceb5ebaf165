/**
 * Security sweep of the real `sluice` binary:
 * - the upstream key (a recognisable random string) never reaches a client, the access log or stderr — even
 *   in front of a hostile upstream that echoes the Authorization header it receives into its error bodies and
 *   headers (the chaos soak, test/chaos.test.ts, scans its whole output for the key as well);
 * - a client cannot choose where the gateway connects: Host, X-Forwarded-Host/Forwarded, absolute-form and
 *   `..`/encoded/double-slash request targets all end at the configured upstream (and path) or at a 404; a
 *   second upstream on loopback, the one a client names, never receives a request;
 * - gateway keys are required when configured, in the one place they are accepted, and never forwarded.
 */
import { randomBytes } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { type Binary, startBinary } from './chaos/binary.ts'
import { exchange, head } from './chaos/raw-http.ts'
import { mockModel } from './upstream/behaviour.ts'
import { startUpstream, type TestUpstream } from './upstream/server.ts'

const UPSTREAM_KEY = `sk-security-${randomBytes(16).toString('hex')}`
const GATEWAY_KEYS = [`gw-sec-${randomBytes(8).toString('hex')}`, `gw-sec-${randomBytes(8).toString('hex')}`]

let upstream: TestUpstream
/** Another upstream on loopback: the host a hostile client tries to make the gateway call. */
let elsewhere: TestUpstream
let gateway: Binary

beforeAll(async () => {
  upstream = await startUpstream({ apiKey: UPSTREAM_KEY })
  elsewhere = await startUpstream()
  gateway = await startBinary({
    upstreamKey: UPSTREAM_KEY,
    args: ['--upstream', upstream.url, '--gateway-keys', GATEWAY_KEYS.join(',')],
  })
})

afterAll(async () => {
  await gateway?.stop('SIGKILL')
  await upstream?.close()
  await elsewhere?.close()
})

const chatBody = (id: string, stream = true): string =>
  JSON.stringify({ model: mockModel({ id, chunks: 2 }), stream, messages: [{ role: 'user', content: 'hi' }] })

describe('a hostile upstream echoes the Authorization header it receives', () => {
  let echo: Server
  let echoing: Binary
  /** Every status and body the echo upstream sends, by `model`. */
  const ECHO_STATUSES = [400, 401, 403, 404, 422, 429, 500, 502, 503, 504]

  beforeAll(async () => {
    echo = createServer((req, res) => {
      let text = ''
      req.on('data', (chunk: Buffer) => (text += chunk))
      req.on('end', () => {
        const auth = req.headers.authorization ?? ''
        const model = (JSON.parse(text) as { model: string }).model
        if (model === 'mid-stream') {
          // A 200 stream that fails with an OpenAI error event quoting the key (split over two writes).
          res.writeHead(200, { 'content-type': 'text/event-stream' })
          res.write('data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n')
          const event = `data: ${JSON.stringify({ error: { message: `Incorrect API key provided: ${auth}`, type: 'x' } })}\n\n`
          res.write(event.slice(0, 40))
          res.end(event.slice(40))
          return
        }
        const status = Number(model)
        const body = JSON.stringify({
          error: { message: `Incorrect API key provided: ${auth}`, type: 'x', code: 'echo' },
        })
        // Retry quickly: the 429/5xx ones are retried before the gateway gives up.
        res.writeHead(status, { 'content-type': 'application/json', 'x-echo': auth, 'retry-after-ms': '5' })
        res.end(body)
      })
    })
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve))
    const { port } = echo.address() as AddressInfo
    echoing = await startBinary({ upstreamKey: UPSTREAM_KEY, args: ['--upstream', `http://127.0.0.1:${port}/v1`] })
  })
  afterAll(async () => {
    await echoing?.stop('SIGKILL')
    await new Promise((resolve) => echo?.close(resolve))
  })

  test.each(ECHO_STATUSES.flatMap((status) => [{ status, stream: true }, { status, stream: false }]))(
    'upstream $status (stream: $stream): the key is redacted from the error the client gets',
    async ({ status, stream }) => {
      const response = await fetch(`${echoing.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: String(status), stream, messages: [{ role: 'user', content: 'x' }] }),
      })
      const text = await response.text()
      expect(response.status).toBeGreaterThanOrEqual(400)
      expect(text).not.toContain(UPSTREAM_KEY)
      response.headers.forEach((value) => expect(value).not.toContain(UPSTREAM_KEY))
      // It was there to leak: the echo is in the answer, redacted.
      expect(text).toContain('[redacted]')
    },
  )

  test('an upstream error event mid-stream that quotes the key reaches the client redacted, still the last event', async () => {
    const response = await fetch(`${echoing.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'mid-stream', stream: true, messages: [{ role: 'user', content: 'x' }] }),
    })
    expect(response.status).toBe(200)
    const text = await response.text()
    expect(text).not.toContain(UPSTREAM_KEY)
    const events = text.split('\n\n').filter((block) => block.startsWith('data: '))
    expect(events).toHaveLength(2)
    const last = JSON.parse(events[1]!.slice('data: '.length)) as { error: { message: string } }
    expect(last.error.message).toBe('Incorrect API key provided: Bearer [redacted]')
  })

  test('nothing the binary printed contains the key', () => {
    expect(echoing.lines.length).toBeGreaterThan(0)
    expect(echoing.stdout()).not.toContain(UPSTREAM_KEY)
    expect(echoing.stderr()).not.toContain(UPSTREAM_KEY)
  })
})

describe('a client cannot choose the upstream host or path', () => {
  const requestTo = (target: string, id: string, lines: string[]): string => {
    const body = chatBody(id)
    return head(`POST ${target} HTTP/1.1`, [
      ...lines,
      'Content-Type: application/json',
      `Authorization: Bearer ${GATEWAY_KEYS[0]}`,
      'Connection: close',
      `Content-Length: ${body.length}`,
    ]) + body
  }

  test('Host, forwarding headers, absolute-form and dot-segment targets reach our upstream or a 404', async () => {
    const ours = new URL(gateway.url).host
    const theirs = new URL(elsewhere.url).host
    const forwarded = [
      `X-Forwarded-Host: ${theirs}`,
      'X-Forwarded-Proto: https',
      `Forwarded: host=${theirs};proto=http`,
    ]
    // [name, request target, extra head lines, expected status]
    const cases: [string, string, string[], number][] = [
      ['Host names another server', '/v1/chat/completions', [`Host: ${theirs}`], 200],
      ['forwarding headers name another server', '/v1/chat/completions', [`Host: ${ours}`, ...forwarded], 200],
      ['absolute-form target', `http://${theirs}/v1/chat/completions`, [`Host: ${theirs}`], 200],
      ['absolute-form https target', `https://${theirs}/v1/chat/completions`, [`Host: ${ours}`], 200],
      ['dot segments back into the route', '/v1/../v1/./chat/completions', [`Host: ${ours}`], 200],
      ['encoded dot segments', '/v1/%2e%2e/v1/chat/completions', [`Host: ${ours}`], 200],
      ['a URL in the query', `/v1/chat/completions?base=http://${theirs}/v1`, [`Host: ${ours}`], 200],
      ['dot segments out of the route', '/v1/chat/completions/../../../admin', [`Host: ${ours}`], 404],
      ['an encoded slash', '/v1/chat%2fcompletions', [`Host: ${ours}`], 404],
      ['a network-path target', `//${theirs}/v1/chat/completions`, [`Host: ${ours}`], 404],
      ['a backslash target', `/\\${theirs}/v1/chat/completions`, [`Host: ${ours}`], 404],
      ['userinfo-looking target', `/@${theirs}/v1/chat/completions`, [`Host: ${ours}`], 404],
      ['another API route (no pass-through)', '/v1/models', [`Host: ${ours}`], 404],
    ]
    for (const [index, [name, target, lines, status]] of cases.entries()) {
      const id = `route-${index}`
      const reply = await exchange(gateway.url, requestTo(target, id, lines))
      expect({ name, status: reply.status }).toEqual({ name, status })
      const records = upstream.attempts(id)
      expect({ name, reached: records.length }).toEqual({ name, reached: status === 200 ? 1 : 0 })
      for (const record of records) {
        expect({ name, path: record.path, host: record.headers.host }).toEqual({
          name,
          path: '/v1/chat/completions',
          host: new URL(upstream.url).host,
        })
      }
    }
    const connect = await exchange(gateway.url, `CONNECT ${theirs} HTTP/1.1\r\nHost: ${theirs}\r\n\r\n`)
    expect(connect.closedByServer).toBe(true)
    expect(connect.text).not.toMatch(/^HTTP\/1\.1 200/)
    expect(elsewhere.requests).toEqual([])
  })
})

describe('gateway keys', () => {
  const send = (headers: Record<string, string>, body = chatBody('auth-denied'), path = '/v1/chat/completions') =>
    fetch(`${gateway.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body,
    })

  test('required: any other way of presenting (or not presenting) a key is 401, before the body is read', async () => {
    const before = upstream.requests.length
    const attempts: [string, Record<string, string>, string?][] = [
      ['no key', {}],
      ['a wrong key', { authorization: 'Bearer gw-wrong' }],
      ['the upstream key', { authorization: `Bearer ${UPSTREAM_KEY}` }],
      ['a prefix of a key', { authorization: `Bearer ${GATEWAY_KEYS[0]!.slice(0, -1)}` }],
      ['a key with a suffix', { authorization: `Bearer ${GATEWAY_KEYS[0]}x` }],
      ['two keys', { authorization: `Bearer ${GATEWAY_KEYS[0]} ${GATEWAY_KEYS[1]}` }],
      ['Basic scheme', { authorization: `Basic ${Buffer.from(`user:${GATEWAY_KEYS[0]}`).toString('base64')}` }],
      ['x-api-key header', { 'x-api-key': GATEWAY_KEYS[0]! }],
      ['api-key header', { 'api-key': GATEWAY_KEYS[0]! }],
      ['key in the query', {}, `/v1/chat/completions?key=${GATEWAY_KEYS[0]}`],
      ['key in a cookie', { cookie: `authorization=Bearer ${GATEWAY_KEYS[0]}` }],
      ['an over-limit body without a key', {}],
    ]
    for (const [name, headers, path] of attempts) {
      const body = name.startsWith('an over-limit') ? 'x'.repeat(2 * 1024 * 1024) : chatBody('auth-denied')
      const response = await send(headers, body, path)
      const error = ((await response.json()) as { error: { code: string } }).error
      expect({ name, status: response.status, code: error.code }).toEqual({
        name,
        status: 401,
        code: 'invalid_api_key',
      })
    }
    expect(upstream.requests.length).toBe(before)
  })

  test('either configured key works, and the upstream gets the upstream key, never the gateway key', async () => {
    for (const [index, key] of GATEWAY_KEYS.entries()) {
      const id = `auth-ok-${index}`
      const response = await send({ authorization: `Bearer ${key}` }, chatBody(id))
      expect(response.status).toBe(200)
      expect(await response.text()).toContain('data: [DONE]')
      const [record] = upstream.attempts(id)
      expect(record!.authorization).toBe(`Bearer ${UPSTREAM_KEY}`)
      expect(JSON.stringify(record!.headers)).not.toContain(key)
      expect(record!.body).not.toContain(key)
    }
  })

  test('no key, gateway key or upstream key in anything the binary printed', () => {
    const printed = gateway.stdout() + gateway.stderr()
    expect(gateway.lines.length).toBeGreaterThan(0)
    for (const secret of [UPSTREAM_KEY, ...GATEWAY_KEYS]) expect(printed).not.toContain(secret)
  })
})

/**
 * The gateway as a fetch handler (no HTTP server in between): routing, every bad input with its JSON error,
 * auth, key injection and scrubbing, streaming and buffered calls through the real upstream client, SharedSemaphore
 * and test upstream, /metrics from the OpenTelemetry SDK, and drain/close. The same gateway is served over real
 * HTTP on node, bun and deno by the contract suite.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import { createGateway, type Gateway } from '../core/gateway/gateway.ts'
import { createPrometheusMetrics, type PrometheusMetrics } from '../core/metrics/prometheus.ts'
import { SharedSemaphore } from '../core/semaphore.ts'
import { createStreamTelemetry } from '../core/telemetry/stream-telemetry.ts'
import { createUpstreamClient, type UpstreamClient } from '../core/upstream/client.ts'
import { mockModel } from './upstream/behaviour.ts'
import { readSse } from './upstream/harness.ts'
import { startUpstream, type TestUpstream } from './upstream/server.ts'

const UPSTREAM_KEY = 'sk-upstream-secret-123'
const CAPACITY = 4
let upstream: TestUpstream
let semaphore: SharedSemaphore
let client: UpstreamClient
let prometheus: PrometheusMetrics

beforeAll(async () => {
  upstream = await startUpstream({ apiKey: UPSTREAM_KEY })
  semaphore = new SharedSemaphore({ capacity: CAPACITY })
  prometheus = createPrometheusMetrics()
  const telemetry = createStreamTelemetry({ meter: prometheus.meter, permits: { upstream: semaphore } })
  client = createUpstreamClient({ semaphore, telemetry, queueTimeoutMs: 2_000, idleTimeoutMs: 2_000, retry: { baseDelayMs: 5, maxDelayMs: 20 } })
})
afterAll(async () => {
  await upstream.close()
  await prometheus.shutdown()
})
afterEach(async () => {
  for (let i = 0; i < 200 && client.active > 0; i++) await new Promise((resolve) => setTimeout(resolve, 10))
  expect(client.active).toBe(0)
  expect(semaphore.available).toBe(CAPACITY)
})

function gateway(options: Partial<Parameters<typeof createGateway>[0]> = {}): Gateway {
  return createGateway({ upstreamUrl: upstream.url, upstreamKey: UPSTREAM_KEY, runner: client, metrics: prometheus, ...options })
}

function chat(body: unknown, init: { path?: string; headers?: Record<string, string>; method?: string } = {}): Request {
  return new Request(`http://gateway.test${init.path ?? '/v1/chat/completions'}`, {
    method: init.method ?? 'POST',
    headers: { 'content-type': 'application/json', ...init.headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
}

const messages = [{ role: 'user', content: 'hi' }]

async function expectJsonError(response: Response, status: number, code: string): Promise<void> {
  expect(response.status).toBe(status)
  expect(response.headers.get('content-type')).toBe('application/json')
  const body = (await response.json()) as { error: { code: string; message: string; type: string } }
  expect(body.error.code).toBe(code)
  expect(body.error.message.length).toBeGreaterThan(0)
}

describe('streaming and buffered calls', () => {
  test('stream: true → SSE with the anti-buffering headers, every event and [DONE]', async () => {
    const response = await gateway().fetch(chat({ model: mockModel({ id: 'g-stream', chunks: 7 }), stream: true, messages }))
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/)
    expect(response.headers.get('cache-control')).toBe('no-cache')
    expect(response.headers.get('x-accel-buffering')).toBe('no')
    const { events, error } = await readSse(response)
    expect(error).toBeUndefined()
    expect(events.at(-1)?.data).toBe('[DONE]')
    expect(events.filter((e) => e.data.includes('"content":"w')).length).toBe(7)
  })

  test('the legacy /stream path always streams', async () => {
    const response = await gateway().fetch(chat({ model: mockModel({ id: 'g-legacy', chunks: 2 }), messages }, { path: '/v1/chat/completions/stream' }))
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/)
    expect((await readSse(response)).events.at(-1)?.data).toBe('[DONE]')
    expect(JSON.parse(upstream.requests.find((r) => r.id === 'g-legacy')!.body).stream).toBe(true)
  })

  test('stream: false → buffered chat.completion JSON', async () => {
    const response = await gateway().fetch(chat({ model: mockModel({ id: 'g-buffered', chunks: 3 }), messages }))
    expect(response.status).toBe(200)
    const body = (await response.json()) as { object: string }
    expect(body.object).toBe('chat.completion')
  })

  test('the upstream key is added server-side; client headers are never forwarded', async () => {
    const response = await gateway({ gatewayKeys: ['gw-key'] }).fetch(
      chat({ model: mockModel({ id: 'g-key', chunks: 1 }), stream: true, messages }, { headers: { authorization: 'Bearer gw-key', 'x-evil': 'smuggled', cookie: 'c=1' } }),
    )
    await readSse(response)
    const record = upstream.requests.find((r) => r.id === 'g-key')!
    expect(record.authorization).toBe(`Bearer ${UPSTREAM_KEY}`)
    expect(record.headers['x-evil']).toBeUndefined()
    expect(record.headers.cookie).toBeUndefined()
  })

  test('an upstream 4xx passes through with its status, the upstream key scrubbed', async () => {
    // A provider that echoes the key it got in its 401 body (some do, partially masked or not).
    const echoing = createServer((req, res) => {
      res.writeHead(401, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ error: { message: `Incorrect API key provided: ${req.headers.authorization}`, type: 'invalid_request_error', code: 'invalid_api_key' } }))
    })
    await new Promise<void>((resolve) => echoing.listen(0, '127.0.0.1', resolve))
    try {
      const { port } = echoing.address() as AddressInfo
      const gw = createGateway({ upstreamUrl: `http://127.0.0.1:${port}/v1`, upstreamKey: 'sk-echoed-key-456', runner: client })
      const response = await gw.fetch(chat({ model: 'm', stream: true, messages }))
      expect(response.status).toBe(401)
      const text = await response.text()
      expect(text).toContain('Incorrect API key provided: Bearer [redacted]')
      expect(text).not.toContain('sk-echoed-key-456')
    } finally {
      echoing.close()
    }
  })

  test('queue timeout before the first byte → 503 JSON with Retry-After', async () => {
    const held = await semaphore.acquire(CAPACITY)
    try {
      const quick = createUpstreamClient({ semaphore, queueTimeoutMs: 50 })
      const response = await createGateway({ upstreamUrl: upstream.url, runner: quick }).fetch(chat({ model: mockModel({ id: 'g-queue' }), stream: true, messages }))
      expect(response.status).toBe(503)
      expect(Number(response.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
      expect(((await response.json()) as { error: { type: string } }).error.type).toBe('server_error')
    } finally {
      held.release()
    }
  })

  test('retries exhausted on 429 → 429 JSON of type rate_limit_error, Retry-After kept', async () => {
    const response = await gateway().fetch(chat({ model: mockModel({ id: 'g-429', fail: 429, retryAfterMs: 5 }), stream: true, messages }))
    expect(response.status).toBe(429)
    expect(response.headers.get('retry-after')).not.toBeNull()
    expect(((await response.json()) as { error: { type: string } }).error.type).toBe('rate_limit_error')
  })

  test('a client abort mid-stream reaches the upstream', async () => {
    const controller = new AbortController()
    const request = new Request(chat({ model: mockModel({ id: 'g-abort', chunks: 5, stallAfter: 1 }), stream: true, messages }), { signal: controller.signal })
    const response = await gateway().fetch(request)
    const reader = response.body!.getReader()
    await reader.read()
    controller.abort()
    const record = await upstream.waitForClosed('g-abort')
    expect(record.outcome).toBe('aborted')
  })
})

describe('bad input → 4xx with a JSON error body', () => {
  test.each([
    ['malformed JSON', () => chat('{"model":'), 400, 'invalid_json'],
    ['missing fields', () => chat({ model: 'x' }), 400, 'invalid_request'],
    ['wrong content type', () => chat('{}', { headers: { 'content-type': 'text/plain' } }), 415, 'unsupported_media_type'],
    ['unknown route', () => chat({}, { path: '/v2/anything' }), 404, 'not_found'],
    ['other /v1 routes without pass-through', () => chat({}, { path: '/v1/embeddings' }), 404, 'not_found'],
    ['wrong method', () => new Request('http://gateway.test/v1/chat/completions'), 405, 'method_not_allowed'],
  ])('%s', async (_name, request, status, code) => {
    await expectJsonError(await gateway().fetch(request()), status, code)
  })

  test('body over the limit → 413', async () => {
    const big = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x'.repeat(2_000) }] })
    await expectJsonError(await gateway({ bodyLimitBytes: 1_000 }).fetch(chat(big)), 413, 'body_too_large')
  })

  test('405 names the allowed methods', async () => {
    const response = await gateway().fetch(new Request('http://gateway.test/v1/chat/completions', { method: 'PUT' }))
    expect(response.headers.get('allow')).toBe('POST')
  })

  test('gateway keys: missing or wrong → 401, right → 200', async () => {
    const gw = gateway({ gatewayKeys: ['k1', 'k2'] })
    const body = { model: mockModel({ id: 'g-auth', chunks: 1 }), messages }
    await expectJsonError(await gw.fetch(chat(body)), 401, 'invalid_api_key')
    await expectJsonError(await gw.fetch(chat(body, { headers: { authorization: 'Bearer k3' } })), 401, 'invalid_api_key')
    const ok = await gw.fetch(chat(body, { headers: { authorization: 'Bearer k2' } }))
    expect(ok.status).toBe(200)
    await ok.text()
  })

  test('the upstream host comes only from config', async () => {
    const request = chat({ model: mockModel({ id: 'g-host', chunks: 1 }), messages }, { headers: { host: 'evil.example', 'x-forwarded-host': 'evil.example' } })
    const response = await gateway().fetch(new Request('http://evil.example/v1/chat/completions', request))
    await response.text()
    expect(upstream.requests.some((r) => r.id === 'g-host')).toBe(true)
  })

  test('bad options name the option', () => {
    expect(() => createGateway({ upstreamUrl: 'ftp://x', runner: client })).toThrow('Expected `upstreamUrl` to be an absolute http(s) URL, got `ftp://x` (string)')
    expect(() => createGateway({ upstreamUrl: upstream.url, runner: client, bodyLimitBytes: 0 })).toThrow('Expected `bodyLimitBytes` to be a positive integer, got `0` (number)')
  })
})

describe('health, metrics, drain', () => {
  test('/metrics is Prometheus text from the OpenTelemetry SDK after traffic', async () => {
    const gw = gateway()
    await (await gw.fetch(chat({ model: mockModel({ id: 'g-metrics', chunks: 3 }), stream: true, messages }))).text()
    const response = await gw.fetch(new Request('http://gateway.test/metrics'))
    expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/)
    const text = await response.text()
    expect(text).toMatch(/^# TYPE stream_duration_seconds histogram$/m)
    expect(text).toMatch(/^time_to_first_chunk_seconds_count\{.*\} [1-9]\d*$/m)
    expect(text).toMatch(/^active_streams(\{.*\})? 0$/m)
  })

  test('drain: /healthz turns 503 and new calls get 503, live streams finish intact', async () => {
    const gw = gateway()
    expect((await gw.fetch(new Request('http://gateway.test/healthz'))).status).toBe(200)
    const live = await gw.fetch(chat({ model: mockModel({ id: 'g-drain-live', chunks: 5, delay: 20 }), stream: true, messages }))
    gw.drain()
    expect((await gw.fetch(new Request('http://gateway.test/healthz'))).status).toBe(503)
    await expectJsonError(await gw.fetch(chat({ model: mockModel({ id: 'g-drain-new' }), stream: true, messages })), 503, 'server_draining')
    const { events } = await readSse(live)
    expect(events.at(-1)?.data).toBe('[DONE]')
    expect(upstream.requests.some((r) => r.id === 'g-drain-new')).toBe(false)
  })

  test('close(): a stream past the deadline ends with an error event, never a clean end', async () => {
    const gw = gateway()
    const live = await gw.fetch(chat({ model: mockModel({ id: 'g-close', chunks: 5, stallAfter: 1 }), stream: true, messages }))
    const reading = readSse(live)
    await gw.close({ timeoutMs: 100 })
    const { events } = await reading
    const last = events.at(-1)!
    expect(last.data).not.toBe('[DONE]')
    expect(JSON.parse(last.data).error.code).toMatch(/shutdown/)
    expect((await upstream.waitForClosed('g-close')).outcome).toBe('aborted')
  })
})

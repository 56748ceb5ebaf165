import { describe, expect, test } from 'vitest'
import { createGatewayKeyCheck } from '../core/gateway/auth.ts'
import { parseChatRequest } from '../core/gateway/chat-request.ts'
import { errorResponse, HttpError } from '../core/gateway/http-error.ts'
import { readBodyText } from '../core/gateway/read-body.ts'
import { createDemoUpstream } from '../core/demo-upstream.ts'
import { createPrometheusMetrics } from '../core/metrics/prometheus.ts'

const encoder = new TextEncoder()

/** A request whose body is produced chunk by chunk; `pulled` counts chunks the reader actually asked for. */
function streamingRequest(chunks: Uint8Array[], headers: Record<string, string> = {}): { request: Request; pulled: () => number } {
  let pulled = 0
  const body = new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        const next = chunks[pulled++]
        if (next) controller.enqueue(next)
        else controller.close()
      },
    },
    { highWaterMark: 0 },
  )
  const request = new Request('http://gateway.test/v1/chat/completions', { method: 'POST', body, headers, duplex: 'half' } as RequestInit)
  return { request, pulled: () => pulled }
}

async function caught(promise: Promise<unknown>): Promise<HttpError> {
  const error = await promise.then(() => undefined, (e: unknown) => e)
  expect(error).toBeInstanceOf(HttpError)
  return error as HttpError
}

describe('readBodyText', () => {
  test('reads a body under the limit', async () => {
    const { request } = streamingRequest([encoder.encode('{"a":'), encoder.encode('1}')])
    expect(await readBodyText(request, 100)).toBe('{"a":1}')
  })

  test('refuses a declared Content-Length over the limit before reading', async () => {
    const { request, pulled } = streamingRequest([new Uint8Array(10)], { 'content-length': '101' })
    const error = await caught(readBodyText(request, 100))
    expect(error.status).toBe(413)
    expect(pulled()).toBe(0)
  })

  test('enforces the limit while reading: stops at the chunk that crosses it', async () => {
    const chunks = Array.from({ length: 100 }, () => new Uint8Array(1024))
    const { request, pulled } = streamingRequest(chunks)
    const error = await caught(readBodyText(request, 4 * 1024 + 10))
    expect(error).toMatchObject({ status: 413, code: 'body_too_large' })
    expect(pulled()).toBe(5) // never read the remaining 95 KiB
  })

  test('a body of exactly the limit is accepted', async () => {
    const { request } = streamingRequest([new Uint8Array(50).fill(0x61), new Uint8Array(50).fill(0x62)])
    expect(await readBodyText(request, 100)).toHaveLength(100)
  })

  test('invalid UTF-8 is a 400, not silently replaced', async () => {
    const { request } = streamingRequest([new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])])
    expect(await caught(readBodyText(request, 100))).toMatchObject({ status: 400, code: 'invalid_encoding' })
  })
})

describe('parseChatRequest', () => {
  const valid = { model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] }

  test('accepts a valid request and keeps the raw text', () => {
    const text = JSON.stringify({ ...valid, stream: true, temperature: 0.2, tools: [] })
    expect(parseChatRequest(text)).toEqual({ text, model: 'gpt-test', stream: true })
    expect(parseChatRequest(JSON.stringify(valid)).stream).toBe(false)
  })

  test.each([
    ['not json', '{"model":', 'invalid_json'],
    ['an array', '[]', 'invalid_request'],
    ['no model', JSON.stringify({ messages: valid.messages }), 'invalid_request'],
    ['empty model', JSON.stringify({ ...valid, model: '' }), 'invalid_request'],
    ['messages not array', JSON.stringify({ ...valid, messages: 'hi' }), 'invalid_request'],
    ['empty messages', JSON.stringify({ ...valid, messages: [] }), 'invalid_request'],
    ['bad role', JSON.stringify({ ...valid, messages: [{ role: 'root', content: 'x' }] }), 'invalid_request'],
    ['bad content', JSON.stringify({ ...valid, messages: [{ role: 'user', content: 5 }] }), 'invalid_request'],
    ['stream not boolean', JSON.stringify({ ...valid, stream: 'yes' }), 'invalid_request'],
  ])('rejects %s with a 400', (_name, text, code) => {
    let error: unknown
    try {
      parseChatRequest(text)
    } catch (e) {
      error = e
    }
    expect(error).toMatchObject({ status: 400, code })
  })

  test('names the offending field', () => {
    expect(() => parseChatRequest(JSON.stringify({ ...valid, messages: [{ role: 'user' }, { role: 'x' }] }))).toThrow(
      /`messages\[1\]\.role`/,
    )
  })

  test('deeply nested JSON is refused without a stack overflow', () => {
    const deep = `{"model":"m","messages":[{"role":"user","content":"x"}],"x":${'['.repeat(100_000)}${']'.repeat(100_000)}}`
    expect(() => parseChatRequest(deep)).toThrow(expect.objectContaining({ status: 400 }))
    const nested64 = `{"model":"m","messages":[{"role":"user","content":"x"}],"x":${'['.repeat(60)}${']'.repeat(60)}}`
    expect(parseChatRequest(nested64).model).toBe('m')
  })
})

describe('gateway keys', () => {
  const check = createGatewayKeyCheck(['k-one', 'k-two'])
  const withAuth = (value?: string): Request =>
    new Request('http://gateway.test/', value === undefined ? {} : { headers: { authorization: value } })

  test('accepts every configured key', async () => {
    await check.verify(withAuth('Bearer k-one'))
    await check.verify(withAuth('bearer k-two'))
  })

  test.each([undefined, '', 'Bearer', 'Bearer k-on', 'Bearer k-one-', 'Basic k-one', 'k-one'])('refuses %j with 401', async (value) => {
    const error = await caught(check.verify(withAuth(value)))
    expect(error).toMatchObject({ status: 401, type: 'authentication_error' })
  })
})

test('errorResponse renders an OpenAI-shaped JSON body and hides internal errors', async () => {
  const response = errorResponse(new HttpError(413, 'body_too_large', 'too big'))
  expect(response.status).toBe(413)
  expect(response.headers.get('content-type')).toBe('application/json')
  expect(await response.json()).toEqual({ error: { message: 'too big', type: 'invalid_request_error', code: 'body_too_large' } })
  const internal = errorResponse(new Error('secret detail sk-123'))
  expect(internal.status).toBe(500)
  expect(await internal.text()).not.toContain('sk-123')
})

test('Prometheus exposition comes from the OpenTelemetry SDK', async () => {
  const prometheus = createPrometheusMetrics()
  prometheus.meter.createCounter('client_disconnects_total').add(2)
  prometheus.meter.createHistogram('time_to_first_chunk_seconds').record(0.25)
  const text = await prometheus.collect()
  expect(text).toMatch(/^# TYPE client_disconnects_total counter$/m)
  expect(text).toMatch(/^client_disconnects_total 2$/m)
  expect(text).toMatch(/^time_to_first_chunk_seconds_count 1$/m)
  expect(text).toMatch(/^time_to_first_chunk_seconds_sum 0\.25$/m)
  await prometheus.shutdown()
})

describe('demo upstream', () => {
  const demo = createDemoUpstream({ timeToFirstTokenMs: 0, interTokenMs: 0, maxTokens: 5 })
  const post = (body: unknown, signal?: AbortSignal): Promise<Response> =>
    demo('http://demo.invalid/v1/chat/completions', { method: 'POST', body: JSON.stringify(body), ...(signal ? { signal } : {}) })

  test('streams chat.completion.chunk events ending in [DONE]', async () => {
    const response = await post({ model: 'm', stream: true, messages: [{ role: 'user', content: 'hello' }] })
    expect(response.headers.get('content-type')).toBe('text/event-stream')
    const events = (await response.text()).split('\n\n').filter(Boolean)
    expect(events.at(-1)).toBe('data: [DONE]')
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.slice('data: '.length)))
    expect(chunks[0].choices[0].delta.role).toBe('assistant')
    expect(chunks.at(-1).choices[0].finish_reason).toBe('stop')
    const text = chunks.map((c) => c.choices[0].delta.content ?? '').join('')
    expect(text).toBe('You said: "hello". sluice is') // the first 5 word tokens
  })

  test('answers buffered requests with a chat.completion', async () => {
    const response = await post({ model: 'm', messages: [{ role: 'user', content: 'hi' }] })
    const body = await response.json()
    expect(body.object).toBe('chat.completion')
    expect(body.usage.completion_tokens).toBe(5)
  })

  test('stops producing when the caller aborts', async () => {
    const slow = createDemoUpstream({ timeToFirstTokenMs: 0, interTokenMs: 10_000 })
    const controller = new AbortController()
    const response = await slow('http://demo.invalid/v1/chat/completions', {
      method: 'POST',
      body: JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: 'x' }] }),
      signal: controller.signal,
    })
    const reader = response.body!.getReader()
    await reader.read() // role delta
    const pending = reader.read()
    controller.abort(new Error('client left'))
    await expect(pending).rejects.toThrow('client left')
  })

  test('validates its options', () => {
    expect(() => createDemoUpstream({ maxTokens: 0 })).toThrow('Expected `maxTokens` to be a positive integer, got `0` (number)')
  })
})

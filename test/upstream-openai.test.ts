// The official `openai` client (v6) against a server built on the streaming call, served by sluice's Node
// adapter, in front of the test upstream: whole streams arrive, mid-stream failures surface as errors (never as
// a normal end), errors before any byte get their status, and the SDK's abort reaches the upstream.
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { serve } from '../adapters/node/mod.ts'
import type { Server } from '../core/server.ts'
import type { UpstreamRequest } from '../core/upstream/types.ts'
import { expectedContent, mockModel } from './upstream/behaviour.ts'
import { API_KEY, type TestClient, useHarness } from './upstream/harness.ts'

const harness = useHarness()
let server: Server
let client: TestClient
let openai: OpenAI

beforeAll(async () => {
  server = serve(
    async (request) => {
      const text = await request.text()
      const upstreamRequest: UpstreamRequest = {
        url: `${harness.upstream.url}/chat/completions`,
        headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
        body: text,
      }
      const stream = (JSON.parse(text) as { stream?: boolean }).stream === true
      try {
        return stream
          ? await client.stream(upstreamRequest, { signal: request.signal })
          : await client.complete(upstreamRequest, { signal: request.signal })
      } catch (error) {
        // What a gateway does with an error before the first byte: its status and an OpenAI error body.
        const { status, code, message } = error as { status?: number; code?: string; message: string }
        return Response.json({ error: { message, type: 'server_error', code: code ?? null } }, {
          status: status ?? 500,
        })
      }
    },
    { port: 0, hostname: '127.0.0.1' },
  )
  const { url } = await server.ready()
  openai = new OpenAI({ baseURL: `${url.replace(/\/$/, '')}/v1`, apiKey: 'unused', maxRetries: 0 })
})
afterAll(() => server.close())

function chat(fields: Parameters<typeof mockModel>[0]) {
  return openai.chat.completions.create({
    model: mockModel(fields),
    stream: true,
    messages: [{ role: 'user', content: 'hi' }],
  })
}

describe('openai v6 client through the Node adapter', () => {
  test('receives the whole stream, chunk objects and the final usage', async () => {
    client = harness.client()
    let content = ''
    let finish: string | null = null
    let usage: unknown
    for await (const chunk of await chat({ id: 'sdk-happy', chunks: 40, delay: 1 })) {
      content += chunk.choices[0]?.delta.content ?? ''
      finish = chunk.choices[0]?.finish_reason ?? finish
      usage = chunk.usage ?? usage
    }
    expect(content).toBe(expectedContent(40))
    expect(finish).toBe('stop')
    expect(usage).toMatchObject({ completion_tokens: 40 })
  })

  test.each([
    ['a connection cut mid-stream', { cutAfter: 3 }, 'upstream_truncated'],
    ['an upstream EOF without [DONE]', { noDone: true }, 'upstream_truncated'],
    ['an idle upstream', { stallAfter: 2 }, 'idle_timeout'],
    ['malformed upstream data', { malformedAfter: 2 }, 'upstream_malformed'],
  ])('surfaces %s as an APIError, not a normal end', async (name, fault, code) => {
    client = harness.client({ idleTimeoutMs: 150 })
    let content = ''
    const iterate = async (): Promise<void> => {
      for await (const chunk of await chat({ id: `sdk-${name.replaceAll(' ', '-')}`, chunks: 5, ...fault })) {
        content += chunk.choices[0]?.delta.content ?? ''
      }
    }
    const error = await iterate().catch((e: unknown) => e)
    expect(error).toBeInstanceOf(OpenAI.APIError)
    expect(error).toMatchObject({ code, type: 'server_error' })
    expect(content.length).toBeGreaterThan(0)
  })

  test('an error before any byte arrives with its status: queue timeout → 503', async () => {
    client = harness.client({ queueTimeoutMs: 100 })
    const holder = await harness.semaphore.acquire(harness.semaphore.capacity)
    const error = await chat({ id: 'sdk-queue' }).catch((e: unknown) => e)
    holder.release()
    expect(error).toBeInstanceOf(OpenAI.InternalServerError)
    expect(error).toMatchObject({ status: 503, code: 'ERR_QUEUE_TIMEOUT' })
  })

  test("an upstream 4xx reaches the SDK as the upstream's own error", async () => {
    client = harness.client()
    const error = await chat({ id: 'sdk-400', fail: 400 }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(OpenAI.BadRequestError)
    expect(error).toMatchObject({ status: 400, code: 'mock_400' })
  })

  test("the SDK's abort reaches the stalled upstream", async () => {
    client = harness.client()
    const stream = await chat({ id: 'sdk-abort', chunks: 5, stallAfter: 1 })
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) break
    }
    const record = await harness.upstream.waitForClosed('sdk-abort')
    expect(record.outcome).toBe('aborted')
    await client.idle()
    expect(client.log.at(-1)).toMatchObject({ type: 'end', outcome: 'disconnect' })
  })

  test('buffered completions work under the same limits', async () => {
    client = harness.client()
    const completion = await openai.chat.completions.create({
      model: mockModel({ id: 'sdk-buffered', chunks: 3 }),
      messages: [{ role: 'user', content: 'hi' }],
    })
    expect(completion.choices[0]!.message.content).toBe(expectedContent(3))
  })
})

// The fault-injecting test upstream itself: every other upstream test trusts what it records.
import { spawn } from 'node:child_process'
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { sharedNow } from '../core/clock.ts'
import { runtimeCommand } from './_runtimes.ts'
import { expectedContent, mockModel } from './upstream/behaviour.ts'
import { startUpstream, type TestUpstream } from './upstream/server.ts'

let upstream: TestUpstream
beforeAll(async () => {
  upstream = await startUpstream({ apiKey: 'sk-test' })
})
afterAll(() => upstream.close())

function post(
  model: string,
  { stream = true, key = 'sk-test', signal }: { stream?: boolean; key?: string; signal?: AbortSignal } = {},
) {
  return fetch(`${upstream.url}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ model, stream, messages: [{ role: 'user', content: 'hi' }] }),
    signal,
  })
}

async function readEvents(response: Response): Promise<{ events: EventSourceMessage[]; error?: unknown }> {
  const events: EventSourceMessage[] = []
  const parser = createParser({ onEvent: (event) => events.push(event) })
  const decoder = new TextDecoder()
  try {
    for await (const chunk of response.body!) parser.feed(decoder.decode(chunk, { stream: true }))
  } catch (error) {
    return { events, error }
  }
  return { events }
}

function content(events: EventSourceMessage[]): string {
  return events
    .filter((event) => event.data !== '[DONE]')
    .map((event) =>
      (JSON.parse(event.data) as { choices: { delta: { content?: string } }[] }).choices[0]?.delta.content ?? ''
    )
    .join('')
}

describe('test upstream', () => {
  test('streams role, content deltas, a final chunk with usage and [DONE], and records it', async () => {
    const response = await post(mockModel({ id: 'happy', chunks: 4, pad: 2 }))
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/)
    const { events } = await readEvents(response)
    expect(events).toHaveLength(1 + 4 + 1 + 1)
    expect(JSON.parse(events[0]!.data).choices[0].delta.role).toBe('assistant')
    const final = JSON.parse(events[5]!.data)
    expect(final.choices[0].finish_reason).toBe('stop')
    expect(final.usage.completion_tokens).toBe(4)
    expect(events[6]!.data).toBe('[DONE]')
    expect(content(events)).toBe(expectedContent(4, 2))
    const record = await upstream.waitForClosed('happy')
    expect(record).toMatchObject({
      attempt: 1,
      status: 200,
      chunksWritten: 4,
      outcome: 'completed',
      authorization: 'Bearer sk-test',
    })
    expect(record.firstByteAt).toBeGreaterThanOrEqual(record.headersAt!)
  })

  test('groups events per write and answers buffered requests with a chat.completion', async () => {
    await readEvents(await post(mockModel({ id: 'grouped', chunks: 6, eventsPerWrite: 3 })))
    // role + 6 contents + final + DONE = 9 events in writes of 3.
    expect((await upstream.waitForClosed('grouped')).writes).toBe(3)
    const response = await post(mockModel({ id: 'buffered', chunks: 3 }), { stream: false })
    const json = (await response.json()) as { object: string; choices: { message: { content: string } }[] }
    expect(json.object).toBe('chat.completion')
    expect(json.choices[0]!.message.content).toBe(expectedContent(3))
  })

  test('fails the first K attempts of an id with Retry-After, then succeeds', async () => {
    const model = mockModel({ id: 'flaky', fail: 503, failTimes: 2, retryAfter: 1, retryAfterMs: 250 })
    const first = await post(model)
    expect(first.status).toBe(503)
    expect(first.headers.get('retry-after')).toBe('1')
    expect(first.headers.get('retry-after-ms')).toBe('250')
    expect(((await first.json()) as { error: { type: string } }).error.type).toBe('server_error')
    expect((await post(model)).status).toBe(503)
    const third = await post(model)
    expect(third.status).toBe(200)
    await readEvents(third)
    expect(upstream.attempts('flaky').map((record) => [record.attempt, record.status])).toEqual([[1, 503], [2, 503], [
      3,
      200,
    ]])
    const dated = await post(mockModel({ id: 'dated', fail: 429, retryAfterDate: 2 }))
    expect(Date.parse(dated.headers.get('retry-after')!)).toBeGreaterThan(Date.now())
  })

  test('rejects a wrong key with 401 and an OpenAI error body', async () => {
    const response = await post(mockModel({ id: 'nokey' }), { key: 'wrong' })
    expect(response.status).toBe(401)
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('invalid_api_key')
  })

  test('cuts the connection after k chunks, optionally mid-event', async () => {
    const { events, error } = await readEvents(
      await post(mockModel({ id: 'cut', chunks: 5, cutAfter: 2, midEvent: true })),
    )
    expect(error).toBeDefined()
    expect(content(events)).toBe(expectedContent(2))
    expect(await upstream.waitForClosed('cut')).toMatchObject({ outcome: 'aborted', chunksWritten: 2 })
  })

  test('sends malformed data, an error event, or no [DONE] on request', async () => {
    const malformed = await readEvents(await post(mockModel({ id: 'bad', chunks: 3, malformedAfter: 1 })))
    expect(malformed.events[2]!.data).toBe('{not json')
    const errored = await readEvents(await post(mockModel({ id: 'err', chunks: 3, errorEvent: 1 })))
    expect(JSON.parse(errored.events.at(-1)!.data).error.code).toBe('mock_error')
    const noDone = await readEvents(await post(mockModel({ id: 'nodone', chunks: 2, noDone: true })))
    expect(noDone.events.at(-1)!.data).not.toBe('[DONE]')
    expect(noDone.error).toBeUndefined()
  })

  test('records when a client leaves a stalled stream', async () => {
    const controller = new AbortController()
    const response = await post(mockModel({ id: 'stall', chunks: 5, stallAfter: 1 }), { signal: controller.signal })
    const reader = response.body!.getReader()
    await upstream.waitFor('stall', (record) => record.chunksWritten === 1)
    await reader.read()
    const abortedAt = sharedNow()
    controller.abort()
    const record = await upstream.waitForClosed('stall')
    expect(record.outcome).toBe('aborted')
    expect(record.closedAt! - abortedAt).toBeLessThan(50)
    expect(record.closedAt! - abortedAt).toBeGreaterThanOrEqual(0)
  })

  test('honours backpressure: a reader that stops pulling pauses the upstream on drain', async () => {
    const response = await post(mockModel({ id: 'slow', chunks: 100_000, pad: 1000 }))
    const reader = response.body!.getReader()
    await reader.read()
    const paused = await upstream.waitFor('slow', (record) => record.paused)
    expect(paused.drainWaits).toBeGreaterThan(0)
    // Tens of MiB would be written by now without backpressure; socket buffers hold a few MiB.
    expect(paused.bytesWritten).toBeLessThan(64 * 1024 * 1024)
    await reader.cancel()
    expect((await upstream.waitForClosed('slow')).outcome).toBe('aborted')
  })

  test('runs standalone and prints LISTENING <url>', async () => {
    const [command, ...args] = runtimeCommand('node', 'test/upstream/main.ts')
    const child = spawn(command!, [...args, '--api-key', 'k', '--defaults', 'chunks=2'], {
      stdio: ['pipe', 'pipe', 'inherit'],
    })
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = ''
        child.stdout.setEncoding('utf8').on('data', (data: string) => {
          out += data
          const match = /LISTENING (\S+)/.exec(out)
          if (match) resolve(match[1]!)
        })
        child.once('exit', (code) => reject(new Error(`exited ${code}: ${out}`)))
      })
      const response = await fetch(`${url}/chat/completions`, {
        method: 'POST',
        headers: { authorization: 'Bearer k' },
        body: JSON.stringify({ model: 'mock?id=standalone', stream: false }),
      })
      expect(((await response.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(2)
      const records =
        (await (await fetch(`${new URL(url).origin}/__upstream/requests?id=standalone`)).json()) as unknown[]
      expect(records).toHaveLength(1)
    } finally {
      child.stdin.end()
      await new Promise((resolve) => child.once('exit', resolve))
    }
  })
})

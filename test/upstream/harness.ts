/**
 * Shared setup of the streaming-call tests: one test upstream, a real SharedSemaphore, clients that are checked
 * back to idle after EVERY test (semaphore at capacity, `active` 0, telemetry's `start` − `end` = 0), and
 * helpers to build requests and read SSE responses.
 */
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import { afterAll, afterEach, beforeAll, expect } from 'vitest'
import { SharedSemaphore } from '../../core/semaphore.ts'
import type { StreamEvent } from '../../core/telemetry/events.ts'
import { createStreamTelemetry, type StreamTelemetry } from '../../core/telemetry/stream-telemetry.ts'
import { createUpstreamClient, type UpstreamClient } from '../../core/upstream/client.ts'
import type { UpstreamClientOptions } from '../../core/upstream/options.ts'
import type { UpstreamRequest } from '../../core/upstream/types.ts'
import { type Behaviour, mockModel } from './behaviour.ts'
import { startUpstream, type TestUpstream } from './server.ts'

export const API_KEY = 'sk-upstream-test'
export const CAPACITY = 6

export interface Harness {
  readonly upstream: TestUpstream
  readonly semaphore: SharedSemaphore
  /** A client on the shared semaphore with its own telemetry; `events` collects everything it emitted. */
  client(options?: Partial<UpstreamClientOptions>): TestClient
  request(fields: Partial<Record<keyof Behaviour, string | number | boolean>>, stream?: boolean): UpstreamRequest
}

export interface TestClient extends UpstreamClient {
  readonly telemetry: StreamTelemetry
  readonly log: StreamEvent[]
  /** Resolves when every call of this client has emitted `end`. */
  idle(): Promise<void>
}

/** Registers beforeAll/afterAll/afterEach hooks in the calling test file and returns the harness. */
export function useHarness(): Harness {
  let upstream: TestUpstream | undefined
  let semaphore: SharedSemaphore | undefined
  const clients: TestClient[] = []

  beforeAll(async () => {
    upstream = await startUpstream({ apiKey: API_KEY })
    semaphore = new SharedSemaphore({ capacity: CAPACITY })
  })
  afterAll(async () => {
    await upstream?.close()
  })
  // Permits and active counts return to idle after every scenario, whatever path it took.
  afterEach(async () => {
    for (const client of clients.splice(0)) {
      await client.idle()
      expect(client.active).toBe(0)
      expect(client.telemetry.active).toBe(0)
      const starts = client.log.filter((event) => event.type === 'start').length
      expect(client.log.filter((event) => event.type === 'end')).toHaveLength(starts)
    }
    expect(semaphore!.available).toBe(CAPACITY)
    expect(semaphore!.waiting).toBe(0)
  })

  return {
    get upstream() {
      return upstream!
    },
    get semaphore() {
      return semaphore!
    },
    client(options = {}) {
      const given = options.telemetry
      const telemetry = given && typeof given === 'object' ? given : createStreamTelemetry()
      const log: StreamEvent[] = []
      telemetry.events.on('event', (event) => log.push(event))
      // A bare sink stays a bare sink (the worker-pool shape); the harness listens in through its own telemetry.
      const sink = typeof given === 'function'
        ? (event: StreamEvent) => (given(event), telemetry.record(event))
        : telemetry
      const client = createUpstreamClient({
        semaphore: semaphore!,
        retry: { baseDelayMs: 10, maxDelayMs: 50 },
        ...options,
        telemetry: sink,
      })
      const testClient: TestClient = {
        stream: (request, callOptions) => client.stream(request, callOptions),
        complete: (request, callOptions) => client.complete(request, callOptions),
        events: client.events,
        get active() {
          return client.active
        },
        telemetry,
        log,
        idle: () => waitForIdle(client, telemetry),
      }
      clients.push(testClient)
      return testClient
    },
    request(fields, stream = true) {
      return {
        url: `${upstream!.url}/chat/completions`,
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
        body: JSON.stringify({ model: mockModel(fields), stream, messages: [{ role: 'user', content: 'hi' }] }),
      }
    },
  }
}

function waitForIdle(client: UpstreamClient, telemetry: StreamTelemetry, timeoutMs = 5_000): Promise<void> {
  if (client.active === 0) return Promise.resolve()
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      off()
      reject(new Error(`client still has ${client.active} active calls after ${timeoutMs} ms`))
    }, timeoutMs)
    const off = telemetry.events.on('end', () => {
      if (client.active !== 0) return
      clearTimeout(timer)
      off()
      resolve()
    })
  })
}

export interface SseRead {
  /** Everything received, as text. */
  text: string
  /** Every chunk's text, in order (what one `read()` returned). */
  chunks: string[]
  events: EventSourceMessage[]
  comments: string[]
  /** The stream rejected a read (not a clean end). */
  error: unknown
}

/** Reads a whole SSE body, parsing it with eventsource-parser like a client would. */
export async function readSse(response: Response, { maxChunks = Number.POSITIVE_INFINITY } = {}): Promise<SseRead> {
  const result: SseRead = { text: '', chunks: [], events: [], comments: [], error: undefined }
  const parser = createParser({
    onEvent: (event) => result.events.push(event),
    onComment: (comment) => result.comments.push(comment),
  })
  const decoder = new TextDecoder()
  const reader = response.body!.getReader()
  try {
    while (result.chunks.length < maxChunks) {
      const { done, value } = await reader.read()
      if (done) break
      const text = decoder.decode(value, { stream: true })
      result.chunks.push(text)
      result.text += text
      parser.feed(text)
    }
  } catch (error) {
    result.error = error
  } finally {
    reader.releaseLock()
  }
  return result
}

/** The concatenated `delta.content` of chat.completion.chunk events. */
export function contentOf(events: EventSourceMessage[]): string {
  return events
    .filter((event) => event.data !== '[DONE]' && !event.data.includes('"error"'))
    .map((event) =>
      (JSON.parse(event.data) as { choices: { delta: { content?: string } }[] }).choices[0]?.delta.content ?? ''
    )
    .join('')
}

/** The `error` object of the last event, if it is an OpenAI-shaped error event. */
export function errorOf(events: EventSourceMessage[]): { message: string; type: string; code: string } | undefined {
  const last = events.at(-1)
  if (!last || last.data === '[DONE]') return undefined
  return (JSON.parse(last.data) as { error?: { message: string; type: string; code: string } }).error
}

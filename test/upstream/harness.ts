/**
 * Shared setup of the streaming-call tests: one test upstream, a real SharedSemaphore, clients that are checked
 * back to idle after EVERY test (semaphore at capacity, `active` 0, telemetry's `start` − `end` = 0), and
 * helpers to build requests and read SSE responses.
 *
 * With `SLUICE_TEST_RUNNER=pool` (the `pool` vitest project) `client()` is a worker pool with 2 workers on the
 * same semaphore (`createStreamRunner`), so the same scenarios check that the pool keeps the in-process contract.
 * With `SLUICE_TEST_RUNNER=undici` (the `undici` project) the in-process client calls the upstream through the Node
 * binary's undici-based fetch (adapters/node/upstream-fetch.ts) instead of the global fetch.
 */
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import { afterAll, afterEach, beforeAll, expect } from 'vitest'
import { SharedSemaphore } from '../../core/semaphore.ts'
import type { StreamEvent } from '../../core/telemetry/events.ts'
import { createStreamTelemetry, type StreamTelemetry } from '../../core/telemetry/stream-telemetry.ts'
import { createStreamRunner } from '../../core/pool/stream-runner.ts'
import { createUpstreamClient, type UpstreamClient } from '../../core/upstream/client.ts'
import type { UpstreamClientOptions } from '../../core/upstream/options.ts'
import type { UpstreamRequest } from '../../core/upstream/types.ts'
import { UPSTREAM_FETCH_MODULE } from '../../adapters/node/upstream-fetch-module.ts'
import { createUpstreamFetch } from '../../adapters/node/upstream-fetch.ts'
import { type Behaviour, mockModel } from './behaviour.ts'
import { startUpstream, type TestUpstream } from './server.ts'

export const API_KEY = 'sk-upstream-test'
export const CAPACITY = 6
/**
 * Which runner `client()` builds: the in-process client, a worker pool (`SLUICE_TEST_RUNNER=pool`), or the
 * in-process client on the undici-based upstream fetch (`SLUICE_TEST_RUNNER=undici`).
 */
export const RUNNER: 'in-process' | 'pool' | 'undici' = process.env.SLUICE_TEST_RUNNER === 'pool'
  ? 'pool'
  : process.env.SLUICE_TEST_RUNNER === 'undici'
  ? 'undici'
  : 'in-process'

export interface Harness {
  readonly upstream: TestUpstream
  readonly semaphore: SharedSemaphore
  /** A client on the shared semaphore with its own telemetry; `events` collects everything it emitted. */
  client(options?: HarnessClientOptions): TestClient
  request(fields: Partial<Record<keyof Behaviour, string | number | boolean>>, stream?: boolean): UpstreamRequest
}

/** Client options, plus a transform MODULE (what the pool loads in its workers; in-process too when given). */
export type HarnessClientOptions = Partial<UpstreamClientOptions> & { transformModule?: string | URL }

export interface TestClient extends UpstreamClient {
  readonly telemetry: StreamTelemetry
  readonly log: StreamEvent[]
  /** Resolves when every call of this client has emitted `end`. */
  idle(): Promise<void>
  /** Releases the runner (the pool's workers); the harness calls it after each test. */
  close(): Promise<void>
  /**
   * Resolves once the runner can start calls at once (a pool's workers are up). Tests that bound the time from
   * the call to its rejection await it first, so that they time the call, not the pool's startup.
   */
  readonly ready: Promise<void>
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
    const used = clients.splice(0)
    try {
      for (const client of used) {
        await client.idle()
        expect(client.active).toBe(0)
        expect(client.telemetry.active).toBe(0)
        const starts = client.log.filter((event) => event.type === 'start').length
        expect(client.log.filter((event) => event.type === 'end')).toHaveLength(starts)
      }
      expect(semaphore!.available).toBe(CAPACITY)
      expect(semaphore!.waiting).toBe(0)
    } finally {
      // A pool's workers are released whatever the checks found.
      await Promise.all(used.map((client) => client.close()))
    }
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
      const { transformModule, transform, ...rest } = options
      // The undici project's fetch, unless the scenario brings its own (a fetch that fails on purpose).
      const undici = RUNNER === 'undici' && rest.fetch === undefined ? createUpstreamFetch() : undefined
      const settings = {
        semaphore: semaphore!,
        retry: { baseDelayMs: 10, maxDelayMs: 50 },
        ...rest,
        ...(undici && transformModule === undefined ? { fetch: undici } : {}),
        telemetry: sink,
      }
      if (RUNNER === 'pool' && transform !== undefined) throw new TypeError('A pool runs transform modules only')
      const runner = RUNNER === 'pool' || transformModule !== undefined
        ? createStreamRunner({
          ...settings,
          workers: RUNNER === 'pool' ? 2 : 0,
          transform: transformModule,
          ...(undici ? { fetchModule: UPSTREAM_FETCH_MODULE } : {}),
        })
        : undefined
      const client = runner ?? createUpstreamClient({ ...settings, ...(transform ? { transform } : {}) })
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
        close: async () => {
          await runner?.close()
          await undici?.close()
        },
        ready: runner?.ready ?? Promise.resolve(),
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

function waitForIdle(
  client: Pick<UpstreamClient, 'active'>,
  telemetry: StreamTelemetry,
  timeoutMs = 5_000,
): Promise<void> {
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

/**
 * What upstream-core.ts (the in-process client) and pool-core.ts (the worker pool) share: the arguments, the
 * request sent to the test upstream, SSE reading, the core calls made through either's `stream()` (a happy stream,
 * three cancels of a stalled upstream, retries, an idle timeout, no [DONE], a cut mid-event), the queue-timeout
 * probe, and the verdict fields both report. Runtime-free (no node: import): run by node, bun and deno.
 */
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import { sharedNow } from '../../core/clock.ts'
import { SharedSemaphore } from '../../core/semaphore.ts'
import type { StreamEvent } from '../../core/telemetry/events.ts'
import { createStreamTelemetry, type StreamTelemetry } from '../../core/telemetry/stream-telemetry.ts'
import type { UpstreamClientOptions } from '../../core/upstream/options.ts'
import type { CallOptions, UpstreamRequest } from '../../core/upstream/types.ts'

/** `<runtime> <scenario>.ts <upstream base url incl. /v1> <api key> <id prefix>` */
export const [url, apiKey, prefix] = process.argv.slice(2) as [string, string, string]

export function request(model: string): { url: string; headers: Record<string, string>; body: string } {
  return {
    url: `${url}/chat/completions`,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
    body: JSON.stringify({ model: `mock?${model}`, stream: true, messages: [{ role: 'user', content: 'hi' }] }),
  }
}

export interface ReadStream {
  events: EventSourceMessage[]
  text: string
}

export async function readAll(response: Response): Promise<ReadStream> {
  const events: EventSourceMessage[] = []
  const parser = createParser({ onEvent: (event) => events.push(event) })
  const decoder = new TextDecoder()
  let text = ''
  for await (const chunk of response.body!) {
    const part = decoder.decode(chunk, { stream: true })
    text += part
    parser.feed(part)
  }
  return { events, text }
}

export const content = (events: EventSourceMessage[]): string =>
  events
    .filter((event) => event.data !== '[DONE]' && !event.data.startsWith('{"error"'))
    .map((event) =>
      (JSON.parse(event.data) as { choices: { delta: { content?: string } }[] }).choices[0]?.delta.content ?? ''
    )
    .join('')
export const errorCode = (events: EventSourceMessage[]): string | undefined =>
  (JSON.parse(events.at(-1)?.data ?? '{}') as { error?: { code: string } }).error?.code

export interface CoreSetup {
  semaphore: SharedSemaphore
  telemetry: StreamTelemetry
  /** Every lifecycle event the scenario's calls emit. */
  log: StreamEvent[]
}

export function coreSetup(capacity: number): CoreSetup {
  const semaphore = new SharedSemaphore({ capacity })
  const telemetry = createStreamTelemetry()
  const log: StreamEvent[] = []
  telemetry.events.on('event', (event) => log.push(event))
  return { semaphore, telemetry, log }
}

/** The options both scenarios' main clients take: a 2-permit stream, a 150 ms idle timeout, fast retries. */
export function clientOptions({ semaphore, telemetry }: CoreSetup): UpstreamClientOptions {
  return {
    semaphore,
    streamWeight: 2,
    telemetry,
    idleTimeoutMs: 150,
    queueTimeoutMs: 2_000,
    retry: { baseDelayMs: 5, maxDelayMs: 20 },
  }
}

/** The in-process client, a worker pool or a stream runner. */
interface Streams {
  stream(request: UpstreamRequest, options?: CallOptions): Promise<Response>
}

export interface CoreCalls {
  happy: ReadStream
  cancelled: { id: string; abortedAt: number; rejected: boolean }[]
  retryId: string
  retried: ReadStream
  idle: ReadStream
  noDone: ReadStream
  cutMid: ReadStream
}

/** The core calls, one after another, through `target.stream()`. */
export async function coreCalls(target: Streams): Promise<CoreCalls> {
  const happy = await readAll(await target.stream(request(`id=${prefix}-happy&chunks=30&eventsPerWrite=3`)))

  // Cancel while the upstream is stalled: three rounds, the test takes the fastest (shared, loaded CPUs).
  const cancelled: { id: string; abortedAt: number; rejected: boolean }[] = []
  for (let round = 0; round < 3; round++) {
    const id = `${prefix}-cancel-${round}`
    const controller = new AbortController()
    const response = await target.stream(request(`id=${id}&chunks=5&stallAfter=1`), { signal: controller.signal })
    const reader = response.body!.getReader()
    const seen: EventSourceMessage[] = []
    const parser = createParser({ onEvent: (event) => seen.push(event) })
    const decoder = new TextDecoder()
    // Role chunk and the first content delta, then the upstream stalls forever.
    while (seen.length < 2) parser.feed(decoder.decode((await reader.read()).value, { stream: true }))
    const abortedAt = sharedNow()
    controller.abort(new Error('client left'))
    const rejected = await reader.read().then(() => false, () => true)
    cancelled.push({ id, abortedAt, rejected })
  }

  const retryId = `${prefix}-retry`
  const retryRequest = request(`id=${retryId}&chunks=3&fail=503&failTimes=2`)
  const retried = await readAll(await target.stream(retryRequest, { id: retryId }))
  const idle = await readAll(await target.stream(request(`id=${prefix}-idle&chunks=5&stallAfter=2`)))
  const noDone = await readAll(await target.stream(request(`id=${prefix}-nodone&chunks=3&noDone=1`)))
  // 20 ms between writes: Bun 1.4.5's fetch drops body bytes that arrive in the same socket read as the FIN of a
  // cut connection (12 of 30 probes saw none of 4 events written before the cut; Node and Deno deliver them, then
  // reject; cf. oven-sh/bun#42261, open). Separate reads keep the whole events; only the half event shares the FIN.
  const cutRequest = request(`id=${prefix}-cut&chunks=6&cutAfter=3&midEvent=1&delay=20`)
  const cutMid = await readAll(await target.stream(cutRequest))
  return { happy, cancelled, retryId, retried, idle, noDone, cutMid }
}

/** The queue-timeout probe: `call` must be rejected (all permits held); its error and how long that took. */
export async function queueTimeout(
  call: () => Promise<Response>,
): Promise<{ code: string | undefined; status: number | undefined; elapsed: number }> {
  const queueStarted = performance.now()
  const queueError = await call().then(
    () => undefined,
    (error: unknown) => error as { code: string; status: number },
  )
  const queueElapsed = performance.now() - queueStarted
  return { code: queueError?.code, status: queueError?.status, elapsed: Math.round(queueElapsed) }
}

/** The verdict fields of the core calls. */
export function coreVerdict(calls: CoreCalls, log: StreamEvent[]): Record<string, unknown> {
  const { happy, cancelled, retryId, retried, idle, noDone, cutMid } = calls
  return {
    happy: { content: content(happy.events), last: happy.events.at(-1)?.data, events: happy.events.length },
    cancelled,
    retry: {
      content: content(retried.events),
      retries: log.filter((e) => e.type === 'retry' && e.id === retryId).length,
    },
    idle: { content: content(idle.events), code: errorCode(idle.events) },
    noDone: { content: content(noDone.events), code: errorCode(noDone.events) },
    cutMid: {
      content: content(cutMid.events),
      code: errorCode(cutMid.events),
      wholeEvents: cutMid.text.split('\n\n').filter(Boolean).length === cutMid.events.length,
    },
  }
}

/** The closing verdict fields: other calls' retries (diagnostics), and the state once every call has ended. */
export function idleVerdict(setup: CoreSetup, retryId: string, active: number): Record<string, unknown> {
  const { semaphore, telemetry, log } = setup
  return {
    // Retries of other calls (e.g. a reused keep-alive connection the upstream had just closed): diagnostics.
    otherRetries: log.flatMap((e) => (e.type === 'retry' && e.id !== retryId ? [`${e.id}: ${e.reason}`] : [])),
    idleState: {
      available: semaphore.available,
      capacity: semaphore.capacity,
      active,
      telemetryActive: telemetry.active,
      disconnects: log.filter((e) => e.type === 'disconnect').length,
      ends: log.filter((e) => e.type === 'end').length,
      starts: log.filter((e) => e.type === 'start').length,
    },
  }
}

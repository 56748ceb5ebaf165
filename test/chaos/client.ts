/**
 * One soak client: sends a plan's chat request to the gateway with fetch(), reads the answer the way an OpenAI
 * SDK would (SSE parsed by eventsource-parser), leaves when the plan says so, and records what it saw — nothing
 * is judged here (./classify.ts does that).
 */
import { createParser } from 'eventsource-parser'
import { mockModel } from '../upstream/behaviour.ts'
import type { StreamPlan } from './stream-mix.ts'

/** How the exchange ended, from the client's side. */
export type Ending =
  /** The body ended normally (for chunked HTTP: the terminating chunk arrived). */
  | 'clean'
  /** Reading the body failed: the server cut the connection without finishing the response. */
  | 'cut'
  /** The client left as planned. */
  | 'aborted'
  /** No response at all (refused, reset before the status line). */
  | 'no-response'
  /** The watchdog gave up: the gateway neither finished nor failed the exchange in time. */
  | 'hung'

export interface Observation {
  status: number | undefined
  headers: Record<string, string>
  /** The whole body as text (SSE or JSON). */
  text: string
  /** SSE `data` fields in order. */
  events: string[]
  ending: Ending
  /** The fetch/read error message, when there was one. */
  error?: string
  /** Data events received when the client left (abort plans). */
  eventsAtAbort?: number
  durationMs: number
}

export interface ClientOptions {
  baseUrl: string
  /** Sent as `Authorization: Bearer …` when the gateway requires keys. */
  gatewayKey?: string
  /** After this long without the exchange ending, it is abandoned and reported as 'hung'. */
  watchdogMs: number
}

export function requestBody(plan: Pick<StreamPlan, 'fields' | 'stream'>): string {
  return JSON.stringify({
    model: mockModel(plan.fields),
    stream: plan.stream,
    messages: [{ role: 'user', content: 'hi' }],
  })
}

export async function runClient(plan: StreamPlan, options: ClientOptions): Promise<Observation> {
  const started = performance.now()
  const controller = new AbortController()
  let leftOnPurpose = false
  let hung = false
  const leave = (): void => {
    leftOnPurpose = true
    controller.abort(new Error('client left (planned)'))
  }
  const watchdog = setTimeout(() => {
    hung = true
    controller.abort(new Error('watchdog'))
  }, options.watchdogMs)
  const abortTimer = plan.abort && 'afterMs' in plan.abort ? setTimeout(leave, plan.abort.afterMs) : undefined
  const afterEvents = plan.abort && 'afterEvents' in plan.abort ? plan.abort.afterEvents : undefined
  const observation: Observation = {
    status: undefined,
    headers: {},
    text: '',
    events: [],
    ending: 'clean',
    durationMs: 0,
  }
  const finish = (ending: Ending, error?: unknown): Observation => {
    clearTimeout(watchdog)
    clearTimeout(abortTimer)
    observation.ending = hung ? 'hung' : leftOnPurpose ? 'aborted' : ending
    if (observation.ending === 'aborted') observation.eventsAtAbort = observation.events.length
    if (error !== undefined && observation.ending !== 'aborted') observation.error = describe(error)
    observation.durationMs = performance.now() - started
    return observation
  }

  let response: Response
  try {
    response = await fetch(`${options.baseUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(options.gatewayKey ? { authorization: `Bearer ${options.gatewayKey}` } : {}),
      },
      body: requestBody(plan),
      signal: controller.signal,
    })
  } catch (error) {
    return finish('no-response', error)
  }
  observation.status = response.status
  response.headers.forEach((value, name) => (observation.headers[name] = value))
  if (afterEvents === 0) leave()

  const parser = createParser({
    onEvent: (event) => {
      observation.events.push(event.data)
      if (afterEvents !== undefined && observation.events.length >= afterEvents && !leftOnPurpose) leave()
    },
  })
  const decoder = new TextDecoder()
  const sse = (response.headers.get('content-type') ?? '').startsWith('text/event-stream')
  try {
    const reader = response.body!.getReader()
    for (;;) {
      if (leftOnPurpose) {
        await reader.cancel().catch(() => {})
        return finish('aborted')
      }
      const { done, value } = await reader.read()
      if (done) break
      const text = decoder.decode(value, { stream: true })
      observation.text += text
      if (sse) parser.feed(text)
    }
    observation.text += decoder.decode()
    return finish('clean')
  } catch (error) {
    return finish('cut', error)
  }
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error)
  const cause = (error as { cause?: { code?: string; message?: string } }).cause
  return cause ? `${error.message} (${cause.code ?? cause.message ?? ''})` : error.message
}

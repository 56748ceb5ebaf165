/**
 * The outcome classifier: names what a client saw (`classify`) and checks it against what the stream's fault must
 * produce (`judge`). The rules every stream obeys whatever its fault:
 * - a 200 stream ends with `data: [DONE]` or with exactly one OpenAI-shaped error event, and nothing after it —
 *   a stream that just stops (clean end or cut) without either is a violation;
 * - its content is exactly the upstream's deterministic content (or that content up to the fault): a retry never
 *   duplicates output;
 * - an error before the first byte is an HTTP status with a JSON error body;
 * - overload may hit any stream, so a queue timeout (503 with Retry-After) is acceptable for all of them, and
 *   so are its later forms: a reconnect after the headers (reset-before-body) that finds no permit in time ends
 *   with a `queue_timeout` error event before any content, and a retry that would end past the queue budget is
 *   not made, so the last failure is reported: the upstream's status (retry-ok) or the lost connection as an
 *   `upstream_truncated` event before any content (reset-before-body). All are counted as overload, and the
 *   upstream must then have seen fewer attempts than planned (run-soak.ts checks).
 * - the upstream key appears nowhere in the status line, headers or body.
 */
import type { Observation } from './client.ts'
import { exhaustedStatus, type StreamPlan } from './stream-mix.ts'

export interface Verdict {
  /** `complete`, `error-event:<code>`, `http:<status>:<code>`, `queue-timeout`, `buffered`, `client-abort`, … */
  outcome: string
  /** Empty when the outcome is one the plan allows. */
  problems: string[]
  /** The outcome is overload's (no permit or no retry budget in time), not the fault's own. */
  overload: boolean
  /** Another stream's crash killed the worker this one ran on: a `worker_crashed` ending, not the fault's own. */
  collateral?: boolean
}

interface ErrorBody {
  error?: { message?: unknown; type?: unknown; code?: unknown }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

function errorCode(data: string): string | undefined {
  const body = parseJson(data) as ErrorBody | undefined
  const code = body?.error?.code
  return body?.error ? (typeof code === 'string' ? code : 'null') : undefined
}

/** The concatenated `delta.content` of the chunk events (the error event and [DONE] excluded). */
export function streamedContent(events: readonly string[]): string {
  let content = ''
  for (const data of events) {
    if (data === '[DONE]' || errorCode(data) !== undefined) continue
    const chunk = parseJson(data) as { choices?: { delta?: { content?: string } }[] } | undefined
    content += chunk?.choices?.[0]?.delta?.content ?? ''
  }
  return content
}

/** Names the outcome the client saw, without looking at the plan. */
export function classify(seen: Observation): string {
  if (seen.ending === 'hung') return 'hung'
  if (seen.ending === 'no-response') return 'no-response'
  if (seen.ending === 'aborted') return 'client-abort'
  if (seen.status !== 200) {
    const code = errorCode(seen.text)
    if (seen.status === 503 && code === 'err_queue_timeout') return 'queue-timeout'
    return `http:${seen.status}:${code ?? 'no-json-error'}`
  }
  if (!(seen.headers['content-type'] ?? '').startsWith('text/event-stream')) {
    return seen.ending === 'clean' ? 'buffered' : 'buffered-cut'
  }
  const last = seen.events.at(-1)
  const code = last === undefined ? undefined : errorCode(last)
  if (last === '[DONE]') return seen.ending === 'clean' ? 'complete' : 'done-then-cut'
  if (code !== undefined) return `error-event:${code}`
  // No [DONE] and no error event: a truncated stream the client could mistake for a short answer.
  return seen.ending === 'clean' ? 'truncated-clean-end' : 'truncated-cut'
}

export function judge(plan: StreamPlan, seen: Observation, secrets: readonly string[] = []): Verdict {
  const outcome = classify(seen)
  const problems: string[] = []
  const expect = plan.expect
  for (const secret of secrets) {
    const headerText = Object.entries(seen.headers).map(([name, value]) => `${name}: ${value}`).join('\n')
    if (seen.text.includes(secret) || headerText.includes(secret)) problems.push('a secret appears in the response')
  }
  if (seen.status === 200 && (seen.headers['content-type'] ?? '').startsWith('text/event-stream')) {
    problems.push(...shapeProblems(seen.events))
  }
  const content = streamedContent(seen.events)
  const sameContent = (wanted: string): void => {
    if (content !== wanted) {
      problems.push(`content differs: got ${content.length} chars ${preview(content)}, want ${wanted.length}`)
    }
  }

  if (outcome === 'queue-timeout') {
    if (!seen.headers['retry-after']) problems.push('503 queue timeout without Retry-After')
    return { outcome, problems, overload: true }
  }
  const reconnectFailed = outcome === 'error-event:queue_timeout' || outcome === 'error-event:upstream_truncated'
  if (plan.fault === 'reset-before-body' && reconnectFailed) {
    if (seen.events.length !== 1) problems.push(`${outcome} after ${seen.events.length - 1} events`)
    return { outcome, problems, overload: true }
  }
  // A worker crash ends every stream on that worker: the crashing plan's own outcome, anyone else's collateral.
  // Either way the client must be told (error event or 502), and what it got must be a prefix of the real content.
  // A cut (no clean end) is the crash outcome when the worker died inside an event the channel had split.
  // A client that leaves after the crash's error event is collateral too.
  const crashed = outcome === 'error-event:worker_crashed' || outcome === 'http:502:err_worker_crashed' ||
    (outcome === 'truncated-cut' && plan.stream) ||
    (outcome === 'client-abort' && seen.events.some((data) => errorCode(data) === 'worker_crashed'))
  if (expect.kind === 'worker-crash' || crashed) {
    if (!crashed) problems.push(`want error-event:worker_crashed (or a 502), got ${outcome}`)
    const full = 'content' in expect ? expect.content : ''
    if (!full.startsWith(content)) problems.push(`content before the crash is not a prefix: ${preview(content)}`)
    return { outcome, problems, overload: false, collateral: expect.kind !== 'worker-crash' }
  }
  const fail = Number(plan.fields.fail)
  if (plan.fault === 'retry-ok' && outcome === `http:${exhaustedStatus(fail)}:err_upstream_status`) {
    return { outcome, problems, overload: true }
  }
  switch (expect.kind) {
    case 'complete':
      if (outcome !== 'complete') problems.push(`want complete, got ${outcome}`)
      else sameContent(expect.content)
      break
    case 'error-event':
      if (outcome !== `error-event:${expect.code}`) problems.push(`want error-event:${expect.code}, got ${outcome}`)
      else sameContent(expect.content)
      break
    case 'http-error': {
      const want = `http:${expect.status}:${expect.code}`
      if (outcome !== want) problems.push(`want ${want}, got ${outcome}`)
      else if (expect.retryAfter && !seen.headers['retry-after']) problems.push(`${want} without Retry-After`)
      break
    }
    case 'client-abort':
      if (outcome === 'complete') sameContent(expect.content)
      else if (outcome !== 'client-abort') problems.push(`want client-abort (or complete), got ${outcome}`)
      else if (!expect.content.startsWith(content)) {
        problems.push(`content before the abort is not a prefix: ${preview(content)}`)
      } else if (seen.events.some((data) => errorCode(data) !== undefined)) {
        problems.push('error event before the abort')
      }
      break
    case 'buffered': {
      if (outcome !== 'buffered') {
        problems.push(`want buffered, got ${outcome}`)
        break
      }
      const body = parseJson(seen.text) as { choices?: { message?: { content?: string } }[] } | undefined
      const got = body?.choices?.[0]?.message?.content
      if (got !== expect.content) problems.push(`buffered content differs: ${preview(String(got))}`)
      break
    }
  }
  return { outcome, problems, overload: false }
}

/** Every event before the last is a chat.completion.chunk; [DONE] or an error event can only come last. */
function shapeProblems(events: readonly string[]): string[] {
  const problems: string[] = []
  events.forEach((data, index) => {
    const last = index === events.length - 1
    if (data === '[DONE]' || errorCode(data) !== undefined) {
      if (!last) problems.push(`event ${index} (${preview(data)}) is followed by more events`)
      return
    }
    const chunk = parseJson(data) as { object?: unknown } | undefined
    if (chunk?.object !== 'chat.completion.chunk') problems.push(`event ${index} is not a chunk: ${preview(data)}`)
  })
  return problems
}

function preview(text: string): string {
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 40)}…${text.slice(-30)}` : text)
}

/**
 * What the test upstream does for one request, chosen by the request's `model` string so that any OpenAI client
 * (the `openai` package, curl, a bun/deno scenario) can steer it without extra headers:
 *
 *   model: "mock?id=r1&chunks=50&delay=20&ttft=100"
 *
 * | parameter        | meaning                                                                     | default |
 * |------------------|-----------------------------------------------------------------------------|---------|
 * | `id`             | request id for the records and `waitFor`; attempts of one id count 1, 2, …  | `anon-N`|
 * | `chunks`         | number of content deltas (`w0 `, `w1 `, … each padded by `pad`)             | 5       |
 * | `pad`            | extra `x` characters appended to every content delta (many bytes)           | 0       |
 * | `delay`          | ms between writes after the first one                                       | 0       |
 * | `ttft`           | ms between the response headers and the first body byte (the role chunk)    | 0       |
 * | `headerDelay`    | ms before the status line and headers are written                           | 0       |
 * | `eventsPerWrite` | SSE events grouped into one `res.write()`                                   | 1       |
 * | `fail`           | answer this HTTP status (with an OpenAI error JSON) instead of streaming    | –       |
 * | `failTimes`      | …but only for the first K attempts of this id, so retries can succeed       | always  |
 * | `retryAfter`     | `Retry-After` header (seconds) sent with `fail`                             | –       |
 * | `retryAfterDate` | `Retry-After` as an HTTP-date this many seconds ahead                       | –       |
 * | `retryAfterMs`   | OpenAI's `retry-after-ms` header sent with `fail`                           | –       |
 * | `cutAfter`       | destroy the socket after the role chunk + k content chunks                  | –       |
 * | `cutBeforeBody`  | for the first K attempts: destroy the socket after headers (+ `ttft`)       | –       |
 * | `stallAfter`     | stop writing after the role chunk + k content chunks…                       | –       |
 * | `stallMs`        | …for this many ms, then carry on (absent: until the client leaves)          | forever |
 * | `midEvent`       | with `cutAfter`/`stallAfter`: first write half of the next event            | 0       |
 * | `malformedAfter` | after k content chunks write `data: {not json` as a whole event, carry on   | –       |
 * | `hugeEvent`      | the first content delta carries this many extra characters                  | 0       |
 * | `noDone`         | end the body cleanly after the final chunk but without `data: [DONE]`       | 0       |
 * | `errorEvent`     | after k content chunks send an OpenAI error event `data: {"error":…}`, end  | –       |
 *
 * A buffered request (`stream: false`) honours `id`, `chunks`, `pad`, `headerDelay`, `ttft` (delay before the
 * body), `fail*`/`retryAfter*` and `cutAfter` (any value: half of the JSON is written, then the socket dies).
 * @module
 */

export interface Behaviour {
  id: string
  chunks: number
  pad: number
  delay: number
  ttft: number
  headerDelay: number
  eventsPerWrite: number
  fail: number | undefined
  failTimes: number
  retryAfter: string | undefined
  retryAfterDate: number | undefined
  retryAfterMs: number | undefined
  cutAfter: number | undefined
  cutBeforeBody: number | undefined
  stallAfter: number | undefined
  stallMs: number | undefined
  midEvent: boolean
  malformedAfter: number | undefined
  hugeEvent: number
  noDone: boolean
  errorEvent: number | undefined
}

const INTEGER_FIELDS = [
  'chunks',
  'pad',
  'delay',
  'ttft',
  'headerDelay',
  'eventsPerWrite',
  'fail',
  'failTimes',
  'retryAfterDate',
  'retryAfterMs',
  'cutAfter',
  'cutBeforeBody',
  'stallAfter',
  'stallMs',
  'malformedAfter',
  'hugeEvent',
  'errorEvent',
] as const
const FLAG_FIELDS = ['midEvent', 'noDone'] as const

let anonymous = 0

/** Builds a `model` string from behaviour fields: `mockModel({ id: 'r1', chunks: 3 })` → `mock?id=r1&chunks=3`. */
export function mockModel(fields: BehaviourFields): string {
  const params = new URLSearchParams()
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined || value === false) continue
    params.set(key, value === true ? '1' : String(value))
  }
  return `mock?${params.toString()}`
}

/** Behaviour fields as `mockModel` takes them. */
export type BehaviourFields = Partial<Record<keyof Behaviour, string | number | boolean>>

/**
 * A streaming chat request's `RequestInit` for a fetch-compatible client, with `redirect: 'error'` as the gateway
 * sends it (the upstream fetches hand the default 'follow' to the global fetch).
 */
export function chatInit(fields: BehaviourFields, init: RequestInit = {}): RequestInit {
  return {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify({ model: mockModel(fields), stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    redirect: 'error',
    ...init,
  }
}

/** Parses a `model` string over `defaults`; unknown parameters throw so a typo cannot silently do nothing. */
export function parseBehaviour(model: unknown, defaults: Partial<Behaviour> = {}): Behaviour {
  const behaviour: Behaviour = {
    id: `anon-${++anonymous}`,
    chunks: 5,
    pad: 0,
    delay: 0,
    ttft: 0,
    headerDelay: 0,
    eventsPerWrite: 1,
    fail: undefined,
    failTimes: Number.POSITIVE_INFINITY,
    retryAfter: undefined,
    retryAfterDate: undefined,
    retryAfterMs: undefined,
    cutAfter: undefined,
    cutBeforeBody: undefined,
    stallAfter: undefined,
    stallMs: undefined,
    midEvent: false,
    malformedAfter: undefined,
    hugeEvent: 0,
    noDone: false,
    errorEvent: undefined,
    ...defaults,
  }
  const text = typeof model === 'string' ? model : ''
  const query = text.indexOf('?')
  if (query === -1) return behaviour
  for (const [key, value] of new URLSearchParams(text.slice(query + 1))) {
    if (key === 'id') behaviour.id = value
    else if (key === 'retryAfter') behaviour.retryAfter = value
    else if ((INTEGER_FIELDS as readonly string[]).includes(key)) {
      const number = Number(value)
      if (!Number.isFinite(number) || number < 0) throw new Error(`mock model: \`${key}\` must be a number ≥ 0`)
      ;(behaviour as unknown as Record<string, number>)[key] = number
    } else if ((FLAG_FIELDS as readonly string[]).includes(key)) {
      ;(behaviour as unknown as Record<string, boolean>)[key] = value !== '0' && value !== 'false'
    } else {
      throw new Error(`mock model: unknown parameter \`${key}\``)
    }
  }
  if (behaviour.eventsPerWrite < 1) behaviour.eventsPerWrite = 1
  return behaviour
}

/** The content the upstream streams for `chunks` deltas (what a client should reassemble). */
export function expectedContent(chunks: number, pad = 0, hugeEvent = 0): string {
  let content = ''
  for (let index = 0; index < chunks; index++) content += contentDelta(index, pad, hugeEvent)
  return content
}

/** The text of content delta number `index`. */
export function contentDelta(index: number, pad: number, hugeEvent: number): string {
  return `w${index} ${'x'.repeat(pad + (index === 0 ? hugeEvent : 0))}`
}

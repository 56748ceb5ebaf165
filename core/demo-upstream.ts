/**
 * An in-process simulated OpenAI-compatible model, so the gateway runs on a fresh machine with no network
 * (`npm start`, or `sluice` without `--upstream`). It is a `fetch`-compatible function serving
 * `POST <base>/chat/completions`: it streams `chat.completion.chunk` SSE events with model-like pacing (a time to
 * first token, then jittered inter-token gaps), ends with `data: [DONE]`, honours the request's AbortSignal and is
 * pull-based, so gateway backpressure and cancellation behave as against a real upstream.
 * @module
 */
import { sleep } from './abort.ts'
import { positiveInteger, nonNegativeInteger } from './validate.ts'

export interface DemoUpstreamOptions {
  /** Delay before the first token, ms. Default 250. */
  timeToFirstTokenMs?: number
  /** Mean gap between tokens, ms (jittered ±50%). Default 30. */
  interTokenMs?: number
  /** Longest reply in tokens. Default 60. */
  maxTokens?: number
}

export type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>

const encoder = new TextEncoder()
const CANNED =
  'sluice is streaming this reply from its embedded demo model. Each token leaves the model after a short, ' +
  'slightly random pause, the way a real language model paces its output, so you can watch time to first ' +
  'token, per-chunk idle timeouts and client disconnects behave exactly as they would against a real upstream. ' +
  'Point the gateway at a real OpenAI-compatible API with --upstream to proxy real completions.'

export function createDemoUpstream(options: DemoUpstreamOptions = {}): FetchLike {
  const timeToFirstTokenMs = nonNegativeInteger('timeToFirstTokenMs', options.timeToFirstTokenMs ?? 250)
  const interTokenMs = nonNegativeInteger('interTokenMs', options.interTokenMs ?? 30)
  const maxTokens = positiveInteger('maxTokens', options.maxTokens ?? 60)

  return async function demoFetch(input, init) {
    const request = new Request(input, init)
    if (request.method !== 'POST' || !new URL(request.url).pathname.endsWith('/chat/completions')) {
      return json(404, { error: { message: 'The demo upstream serves only POST /chat/completions', type: 'invalid_request_error', code: 'not_found' } })
    }
    const body = (await request.json().catch(() => null)) as { model?: string; stream?: boolean; messages?: Array<{ content?: unknown }> } | null
    if (!body || !Array.isArray(body.messages)) {
      return json(400, { error: { message: 'Expected a chat completions body', type: 'invalid_request_error', code: 'invalid_request' } })
    }
    const model = typeof body.model === 'string' ? body.model : 'sluice-demo'
    const lastUserText = String(body.messages.at(-1)?.content ?? '').slice(0, 80)
    const tokens = tokenize(`You said: "${lastUserText}". ${CANNED}`).slice(0, maxTokens)
    const id = `chatcmpl-demo-${crypto.randomUUID()}`
    const created = Math.floor(Date.now() / 1000)
    const signal = request.signal

    await sleep(timeToFirstTokenMs, signal)
    if (!body.stream) {
      return json(200, {
        id, object: 'chat.completion', created, model,
        choices: [{ index: 0, message: { role: 'assistant', content: tokens.join('') }, finish_reason: 'stop' }],
        usage: { prompt_tokens: tokenize(lastUserText).length, completion_tokens: tokens.length, total_tokens: tokenize(lastUserText).length + tokens.length },
      })
    }

    let index = -1 // -1: role delta, 0..n-1: content, n: finish chunk, n+1: [DONE]
    const chunk = (delta: object, finishReason: string | null): Uint8Array =>
      encoder.encode(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: finishReason }] })}\n\n`)
    const stream = new ReadableStream<Uint8Array>(
      {
        async pull(controller) {
          if (index >= 0 && index < tokens.length) await sleep(interTokenMs * (0.5 + Math.random()), signal)
          if (index === -1) controller.enqueue(chunk({ role: 'assistant', content: '' }, null))
          else if (index < tokens.length) controller.enqueue(chunk({ content: tokens[index] }, null))
          else if (index === tokens.length) controller.enqueue(chunk({}, 'stop'))
          else {
            controller.enqueue(encoder.encode('data: [DONE]\n\n'))
            controller.close()
          }
          index++
        },
      },
      { highWaterMark: 0 },
    )
    return new Response(stream, { status: 200, headers: { 'content-type': 'text/event-stream' } })
  }
}

/** Words with their leading space, like BPE tokens. */
function tokenize(text: string): string[] {
  return text.match(/\s*\S+/g) ?? []
}

function json(status: number, value: unknown): Response {
  return new Response(JSON.stringify(value), { status, headers: { 'content-type': 'application/json' } })
}

/**
 * OpenAI wire shapes the test upstream writes: `chat.completion.chunk` SSE events, a `chat.completion` JSON and
 * the `{ error: { message, type, code } }` body. Field sets follow the Chat Completions API reference.
 * @module
 */
import { type Behaviour, contentDelta } from './behaviour.ts'

const encoder = new TextEncoder()
export const DONE_EVENT = encoder.encode('data: [DONE]\n\n')

export function sseEvent(data: unknown): Uint8Array {
  return encoder.encode(`data: ${JSON.stringify(data)}\n\n`)
}

function chunk(behaviour: Behaviour, created: number, model: string, choice: object, usage?: object): object {
  return {
    id: `chatcmpl-${behaviour.id}`,
    object: 'chat.completion.chunk',
    created,
    model,
    system_fingerprint: 'fp_sluice_mock',
    choices: [{ index: 0, logprobs: null, finish_reason: null, ...choice }],
    ...(usage ? { usage } : {}),
  }
}

function usage(behaviour: Behaviour): object {
  return { prompt_tokens: 3, completion_tokens: behaviour.chunks, total_tokens: 3 + behaviour.chunks }
}

/** Every event of a successful stream in order: role, contents, final (finish_reason + usage), [DONE]. */
export function streamEvents(
  behaviour: Behaviour,
  model: string,
): { role: Uint8Array; content: (i: number) => Uint8Array; final: Uint8Array } {
  const created = Math.floor(Date.now() / 1000)
  return {
    role: sseEvent(chunk(behaviour, created, model, { delta: { role: 'assistant', content: '', refusal: null } })),
    content: (index) =>
      sseEvent(
        chunk(behaviour, created, model, {
          delta: { content: contentDelta(index, behaviour.pad, behaviour.hugeEvent) },
        }),
      ),
    final: sseEvent(chunk(behaviour, created, model, { delta: {}, finish_reason: 'stop' }, usage(behaviour))),
  }
}

export function completionJson(behaviour: Behaviour, model: string, content: string): string {
  return JSON.stringify({
    id: `chatcmpl-${behaviour.id}`,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model,
    system_fingerprint: 'fp_sluice_mock',
    choices: [{
      index: 0,
      message: { role: 'assistant', content, refusal: null },
      logprobs: null,
      finish_reason: 'stop',
    }],
    usage: usage(behaviour),
  })
}

/** The error body OpenAI sends, e.g. `{ error: { message, type: 'rate_limit_error', code, param } }`. */
export function errorJson(status: number, message: string, code: string | null = null): string {
  const type = status === 429
    ? 'rate_limit_error'
    : status === 401
    ? 'invalid_request_error'
    : status >= 500
    ? 'server_error'
    : 'invalid_request_error'
  return JSON.stringify({ error: { message, type, param: null, code } })
}

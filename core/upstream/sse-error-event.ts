/**
 * After the first byte a failure can no longer be an HTTP status: it becomes one OpenAI-shaped SSE event,
 * `data: {"error":{"message":…,"type":…,"code":…}}`, and the stream ends. OpenAI's SDKs throw an APIError when a
 * streamed event carries `error` (openai-node v6 `core/streaming.js`), so clients see a failure, not a short answer.
 * @module
 */
import { SluiceError } from '../errors.ts'

const encoder = new TextEncoder()

export interface SseErrorBody {
  message: string
  type: string
  code: string
}

/** The `error` object for `error`: our own codes as snake_case (`ERR_IDLE_TIMEOUT` → `idle_timeout`). */
export function sseErrorBody(error: unknown): SseErrorBody {
  if (error instanceof SluiceError) {
    return { message: error.message, type: 'server_error', code: error.code.replace(/^ERR_/, '').toLowerCase() }
  }
  // Errors that bring their own OpenAI fields (a gateway's shutdown HttpError) keep them.
  if (typeof error === 'object' && error !== null) {
    const { message, type, code } = error as { message?: unknown; type?: unknown; code?: unknown }
    if (typeof code === 'string' && typeof message === 'string') {
      return { message, type: typeof type === 'string' ? type : 'server_error', code }
    }
  }
  // Anything else is a bug or a throwing hook: do not leak its message to the client.
  return { message: 'Internal error while streaming', type: 'server_error', code: 'internal_error' }
}

/** The complete SSE event bytes for `error`. */
export function sseErrorEvent(error: unknown): Uint8Array {
  return encoder.encode(`data: ${JSON.stringify({ error: sseErrorBody(error) })}\n\n`)
}

/** An SSE comment: clients and parsers ignore it, proxies see traffic. */
export const HEARTBEAT_EVENT = encoder.encode(': keep-alive\n\n')

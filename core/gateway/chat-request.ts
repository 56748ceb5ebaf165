/**
 * Parses and validates an OpenAI chat-completions request body. Only what the gateway relies on is checked
 * (`model`, `messages`, `stream`); every other field passes through to the upstream untouched, so new OpenAI
 * parameters work without a gateway release. The raw text is what gets forwarded (no re-serialisation).
 * @module
 */
import { HttpError } from './http-error.ts'

export interface ChatRequest {
  /** The body exactly as the client sent it. */
  readonly text: string
  readonly model: string
  readonly stream: boolean
}

const ROLES = new Set(['system', 'developer', 'user', 'assistant', 'tool', 'function'])

export function parseChatRequest(text: string, { maxDepth = 64 }: { maxDepth?: number } = {}): ChatRequest {
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch (error) {
    // A RangeError here is V8/JSC running out of stack on absurd nesting: still the client's malformed input.
    const detail = error instanceof Error ? error.message : String(error)
    throw new HttpError(400, 'invalid_json', `Request body is not valid JSON: ${detail}`)
  }
  const depth = jsonDepth(body, maxDepth)
  if (depth > maxDepth) throw new HttpError(400, 'json_too_deep', `Request JSON is nested deeper than ${maxDepth} levels`)
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw invalidField('body', 'must be a JSON object')
  }
  const { model, messages, stream } = body as Record<string, unknown>
  if (typeof model !== 'string' || model.length === 0 || model.length > 256) {
    throw invalidField('model', 'must be a non-empty string of at most 256 characters')
  }
  if (!Array.isArray(messages) || messages.length === 0) throw invalidField('messages', 'must be a non-empty array')
  messages.forEach((message: unknown, index) => {
    if (typeof message !== 'object' || message === null || Array.isArray(message)) {
      throw invalidField(`messages[${index}]`, 'must be an object')
    }
    const { role, content } = message as Record<string, unknown>
    if (typeof role !== 'string' || !ROLES.has(role)) {
      throw invalidField(`messages[${index}].role`, `must be one of ${[...ROLES].join(', ')}`)
    }
    if (content !== undefined && content !== null && typeof content !== 'string' && !Array.isArray(content)) {
      throw invalidField(`messages[${index}].content`, 'must be a string, an array of content parts, or null')
    }
  })
  if (stream !== undefined && typeof stream !== 'boolean') throw invalidField('stream', 'must be a boolean')
  return { text, model, stream: stream === true }
}

function invalidField(param: string, rule: string): HttpError {
  return new HttpError(400, 'invalid_request', `Invalid request: \`${param}\` ${rule}`)
}

/** Nesting depth of a parsed JSON value, iterative (no recursion to overflow), stopping once past `limit`. */
function jsonDepth(value: unknown, limit: number): number {
  let deepest = 0
  const stack: Array<[unknown, number]> = [[value, 1]]
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!
    if (typeof node !== 'object' || node === null) continue
    if (depth > deepest) deepest = depth
    if (deepest > limit) return deepest
    for (const child of Array.isArray(node) ? node : Object.values(node)) stack.push([child, depth + 1])
  }
  return deepest
}

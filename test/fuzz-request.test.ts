/**
 * Fuzzing the request path with fast-check: whatever a client sends, validation either accepts it or answers with
 * a 4xx HttpError — never another exception (which would become a 500 or a crash).
 */
import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import { parseChatRequest } from '../core/gateway/chat-request.ts'
import { HttpError } from '../core/gateway/http-error.ts'
import { readBodyText } from '../core/gateway/read-body.ts'

function outcome(run: () => unknown): 'ok' | number {
  try {
    run()
    return 'ok'
  } catch (error) {
    if (!(error instanceof HttpError)) throw error
    return error.status
  }
}

const message = fc.record({
  role: fc.oneof(fc.constantFrom('system', 'user', 'assistant', 'tool', 'developer'), fc.string()),
  content: fc.oneof(fc.string(), fc.constant(null), fc.array(fc.jsonValue(), { maxLength: 3 }), fc.integer()),
})

describe('request validation fuzzing', () => {
  test('arbitrary text is accepted or refused with 400', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (text) => {
        expect([400, 'ok']).toContain(outcome(() => parseChatRequest(text)))
      }),
      { numRuns: 2000 },
    )
  })

  test('arbitrary JSON values are accepted or refused with 400', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 8 }), (value) => {
        expect([400, 'ok']).toContain(outcome(() => parseChatRequest(JSON.stringify(value))))
      }),
      { numRuns: 2000 },
    )
  })

  test('near-valid chat requests: accepted exactly when the gateway invariants hold', () => {
    const body = fc.record(
      {
        model: fc.oneof(fc.string({ maxLength: 300 }), fc.integer(), fc.constant(null)),
        messages: fc.oneof(fc.array(message, { maxLength: 4 }), fc.string()),
        stream: fc.oneof(fc.boolean(), fc.string(), fc.constant(undefined)),
        temperature: fc.double(),
      },
      { requiredKeys: [] },
    )
    fc.assert(
      fc.property(body, (value) => {
        const text = JSON.stringify(value)
        const result = outcome(() => parseChatRequest(text))
        const validModel = typeof value.model === 'string' && value.model.length > 0 && value.model.length <= 256
        const validMessages =
          Array.isArray(value.messages) &&
          value.messages.length > 0 &&
          value.messages.every(
            (m) =>
              ['system', 'user', 'assistant', 'tool', 'developer', 'function'].includes(m.role) &&
              (m.content === null || typeof m.content === 'string' || Array.isArray(m.content)),
          )
        const validStream = value.stream === undefined || typeof value.stream === 'boolean'
        expect(result).toBe(validModel && validMessages && validStream ? 'ok' : 400)
      }),
      { numRuns: 3000 },
    )
  })

  test('arbitrary bytes in arbitrary chunks: text, 400 (bad UTF-8) or 413, and the limit holds', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 8 }), fc.integer({ min: 1, max: 200 }), async (chunks, limit) => {
        const total = chunks.reduce((sum, chunk) => sum + chunk.byteLength, 0)
        let index = 0
        const body = new ReadableStream<Uint8Array>({
          pull(controller) {
            const next = chunks[index++]
            if (next) controller.enqueue(next)
            else controller.close()
          },
        })
        const request = new Request('http://x.test/', { method: 'POST', body, duplex: 'half' } as RequestInit)
        const result = await readBodyText(request, limit).then(
          (text) => text,
          (error: unknown) => {
            if (!(error instanceof HttpError)) throw error
            return error.status
          },
        )
        if (total > limit) expect(result).toBe(413)
        else if (typeof result === 'string') expect(new TextEncoder().encode(result).byteLength).toBe(total)
        else expect(result).toBe(400)
      }),
      { numRuns: 500 },
    )
  })
})

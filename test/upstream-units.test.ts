// The pure parts of the streaming call: event-boundary scanning (property-tested against eventsource-parser),
// Retry-After parsing, the backoff formula, option validation messages, and the SSE error event shape.
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import { SharedSemaphore } from '../core/semaphore.ts'
import { createUpstreamClient } from '../core/upstream/client.ts'
import { IdleTimeoutError, UpstreamTruncatedError } from '../core/upstream/errors.ts'
import { EventBoundaryScanner, parserInput } from '../core/upstream/event-boundary.ts'
import { parseRetryAfter, resolveRetryPolicy, retryDelayMs } from '../core/upstream/retry-policy.ts'
import { sseErrorBody, sseErrorEvent } from '../core/upstream/sse-error-event.ts'

const encoder = new TextEncoder()
const decoder = new TextDecoder()

function parseAll(text: string): EventSourceMessage[] {
  const events: EventSourceMessage[] = []
  const parser = createParser({ onEvent: (event) => events.push(event) })
  parser.feed(text)
  return events
}

// An SSE stream: events of `data:`/`event:`/`id:` lines and comments, any of the three line terminators.
const lineEnd = fc.constantFrom('\n', '\r\n', '\r')
const fieldValue = fc.string({ unit: fc.constantFrom('a', 'é', '😀', ' ', ':', '{', '"', 'x'), maxLength: 12 })
const line = fc.oneof(
  fieldValue.map((v) => `data: ${v}`),
  fieldValue.map((v) => `event: ${v}`),
  fieldValue.map((v) => `: ${v}`),
)
const sseEvent = fc.tuple(fc.array(fc.tuple(line, lineEnd), { minLength: 1, maxLength: 4 }), lineEnd).map(
  ([lines, end]) => lines.map(([text, terminator]) => text + terminator).join('') + end,
)
const stream = fc.tuple(
  fc.array(sseEvent, { maxLength: 8 }),
  fc.array(fc.tuple(line, lineEnd).map(([l, e]) => l + e), { maxLength: 2 }),
)

describe('EventBoundaryScanner', () => {
  test('forwards exactly the complete events, whatever the chunking, and holds back only the unterminated tail', () => {
    fc.assert(
      fc.property(stream, fc.array(fc.nat(40), { maxLength: 30 }), ([events, tailLines], cuts) => {
        const complete = events.join('')
        const bytes = encoder.encode(complete + tailLines.join(''))
        const scanner = new EventBoundaryScanner(1 << 20)
        const regions: Uint8Array[] = []
        let offset = 0
        for (const cut of [...cuts, bytes.length]) {
          const end = Math.min(bytes.length, offset + cut)
          const region = scanner.push(bytes.subarray(offset, end))
          if (region) {
            expect(region.ends.at(-1)).toBe(region.bytes.length)
            regions.push(region.bytes)
          }
          offset = end
        }
        // Every region, parsed on its own by a fresh parser, yields whole events: nothing split across regions.
        const perRegion = regions.flatMap((region) => parseAll(parserInput(decoder.decode(region))))
        // The reference: one parser over all bytes (the tail never completes an event, so it adds none).
        expect(perRegion).toEqual(parseAll(parserInput(decoder.decode(bytes))))
        // Nothing lost or duplicated: forwarded bytes, in order, then the held tail, are the input.
        const forwarded = regions.reduce((sum, region) => sum + region.length, 0)
        expect(forwarded + scanner.heldBytes).toBe(bytes.length)
        expect(decoder.decode(bytes).startsWith(regions.map((region) => decoder.decode(region)).join(''))).toBe(true)
      }),
      { numRuns: 500 },
    )
  })

  test('a chunk ending on a boundary with nothing held is forwarded without a copy', () => {
    const scanner = new EventBoundaryScanner(1024)
    const chunk = encoder.encode('data: 1\n\ndata: 2\n\n')
    const region = scanner.push(chunk)!
    expect(region.bytes.buffer).toBe(chunk.buffer)
    expect(region.ends).toEqual([9, 18])
  })

  test('an unterminated event larger than the limit throws UpstreamMalformedError', () => {
    const scanner = new EventBoundaryScanner(16)
    expect(scanner.push(encoder.encode('data: 0123456'))).toBeUndefined()
    expect(() => scanner.push(encoder.encode('789abcdef'))).toThrow(
      expect.objectContaining({ code: 'ERR_UPSTREAM_MALFORMED' }),
    )
  })
})

describe('retry policy', () => {
  test('parses retry-after-ms first, then Retry-After seconds or HTTP-date', () => {
    const now = Date.parse('Sun, 06 Nov 2044 08:49:37 GMT')
    expect(parseRetryAfter(new Headers({ 'retry-after-ms': '1500', 'retry-after': '9' }), now)).toBe(1500)
    expect(parseRetryAfter(new Headers({ 'retry-after': '2' }), now)).toBe(2000)
    expect(parseRetryAfter(new Headers({ 'retry-after': '0.5' }), now)).toBe(500)
    expect(parseRetryAfter(new Headers({ 'retry-after': 'Sun, 06 Nov 2044 08:49:40 GMT' }), now)).toBe(3000)
    expect(parseRetryAfter(new Headers({ 'retry-after': 'Sun, 06 Nov 1994 08:49:37 GMT' }), now)).toBe(0)
    expect(parseRetryAfter(new Headers({ 'retry-after': 'soon' }), now)).toBeUndefined()
    expect(parseRetryAfter(new Headers(), now)).toBeUndefined()
  })

  test('full jitter stays within [0, min(cap, base·2^(n−1))); Retry-After wins, capped', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0, max: 0.999999, noNaN: true }),
        fc.integer({ min: 1, max: 12 }),
        (random, attempt) => {
          const policy = resolveRetryPolicy({ baseDelayMs: 100, maxDelayMs: 3_000, random: () => random })
          const delay = retryDelayMs(policy, attempt, undefined)
          expect(delay).toBeGreaterThanOrEqual(0)
          expect(delay).toBeLessThan(Math.min(3_000, 100 * 2 ** (attempt - 1)))
        },
      ),
    )
    const policy = resolveRetryPolicy({ maxRetryAfterMs: 5_000 })
    expect(retryDelayMs(policy, 1, 1_234)).toBe(1_234)
    expect(retryDelayMs(policy, 1, 60_000)).toBe(5_000)
  })
})

describe('options', () => {
  const semaphore = new SharedSemaphore({ capacity: 1 })
  test.each([
    [{}, 'Expected `semaphore` to be an object with an acquire() method, got `undefined` (undefined)'],
    [{ semaphore, streamWeight: 0 }, 'Expected `streamWeight` to be a positive integer, got `0` (number)'],
    [{ semaphore, bufferedWeight: 1.5 }, 'Expected `bufferedWeight` to be a positive integer, got `1.5` (number)'],
    [
      { semaphore, queueTimeoutMs: -1 },
      'Expected `queueTimeoutMs` to be a finite number of milliseconds > 0, got `-1` (number)',
    ],
    [
      { semaphore, idleTimeoutMs: Number.POSITIVE_INFINITY },
      'Expected `idleTimeoutMs` to be a finite number of milliseconds ≥ 0, got `Infinity` (number)',
    ],
    [
      { semaphore, retry: { maxAttempts: 0 } },
      'Expected `retry.maxAttempts` to be a positive integer, got `0` (number)',
    ],
    [
      { semaphore, rateLimiter: {} },
      'Expected `rateLimiter` to be an object with an acquire() method, got `[object Object]` (object)',
    ],
    [{ semaphore, telemetry: 'yes' }, 'Expected `telemetry` to be a StreamTelemetry or a function, got `yes` (string)'],
  ])('rejects %o', (options, message) => {
    expect(() => createUpstreamClient(options as never)).toThrow(message)
  })

  test('rejects a request without an absolute http(s) URL', async () => {
    const client = createUpstreamClient({ semaphore })
    await expect(client.stream({ url: '/v1/chat/completions' })).rejects.toThrow(
      'Expected `request.url` to be an absolute http(s) URL',
    )
    expect(client.active).toBe(0)
  })
})

describe('SSE error event', () => {
  test('our errors become snake_case codes; foreign errors do not leak their message', () => {
    expect(sseErrorBody(new IdleTimeoutError(100))).toEqual({
      message: 'No upstream data for 100 ms',
      type: 'server_error',
      code: 'idle_timeout',
    })
    expect(sseErrorBody(new UpstreamTruncatedError('cut'))).toMatchObject({ code: 'upstream_truncated' })
    expect(sseErrorBody(new Error('secret path /etc/x'))).toEqual({
      message: 'Internal error while streaming',
      type: 'server_error',
      code: 'internal_error',
    })
    expect(decoder.decode(sseErrorEvent(new UpstreamTruncatedError('cut')))).toBe(
      'data: {"error":{"message":"cut","type":"server_error","code":"upstream_truncated"}}\n\n',
    )
  })
})

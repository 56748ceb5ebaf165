/**
 * Fuzzing the SSE path end to end (issue 7): an upstream body cut into arbitrary chunks goes through the streaming
 * call (eventsource-parser, boundary hold-back, validation, [DONE]/truncation handling), and a client parses what
 * comes out. Valid streams must give exactly the upstream's events whatever the split; a malformed event or a
 * missing [DONE] must give a prefix of them followed by exactly one error event with the right code — never a clean
 * end without [DONE], never a duplicated or partial event. The body reaches the client through `fetch` (plain bytes:
 * the split is the point here; the socket path is covered against the real test upstream elsewhere).
 */
import { createParser } from 'eventsource-parser'
import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import { SharedSemaphore } from '../core/semaphore.ts'
import { createStreamTelemetry } from '../core/telemetry/stream-telemetry.ts'
import { createUpstreamClient } from '../core/upstream/client.ts'

const encoder = new TextEncoder()
const semaphore = new SharedSemaphore({ capacity: 4 })

function chunkEvent(index: number, text: string): string {
  return JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: `${index}:${text}` } }] })
}

/** Cuts `bytes` at the given offsets (any byte position, inside multi-byte characters and line ends too). */
function split(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((cut) => cut % (bytes.byteLength + 1)))].sort((a, b) => a - b)
  const chunks: Uint8Array[] = []
  let start = 0
  for (const point of [...points, bytes.byteLength]) {
    if (point > start) chunks.push(bytes.slice(start, point))
    start = Math.max(start, point)
  }
  return chunks
}

/** A streaming call whose upstream sends `chunks` as they are (one read each). */
async function streamThrough(chunks: Uint8Array[]): Promise<Response> {
  let index = 0
  const fetchBody: typeof fetch = async () =>
    new Response(
      new ReadableStream<Uint8Array>({
        pull(controller) {
          const next = chunks[index++]
          if (next) controller.enqueue(next)
          else controller.close()
        },
      }),
      { headers: { 'content-type': 'text/event-stream' } },
    )
  const client = createUpstreamClient({ semaphore, fetch: fetchBody, retry: { maxAttempts: 1 }, telemetry: createStreamTelemetry() })
  return client.stream({ url: 'http://upstream.test/v1/chat/completions', body: '{}' })
}

async function runThrough(chunks: Uint8Array[]): Promise<{ events: string[]; clean: boolean }> {
  const response = await streamThrough(chunks)
  const events: string[] = []
  const parser = createParser({ onEvent: (event) => events.push(event.data) })
  const reader = response.body!.getReader()
  const decoder = new TextDecoder()
  let clean = true
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      parser.feed(decoder.decode(value, { stream: true }))
    }
    // A trailing CR may still be the first half of CRLF, so eventsource-parser 3.1 holds it back, and its
    // reset({ consume: true }) does not dispatch the event it ends. At the end of the body that CR is a line end
    // (WHATWG SSE); an LF after it makes one CRLF line end, the same thing, and lets the parser see it.
    parser.feed('\n')
  } catch {
    clean = false
  }
  return { events, clean }
}

/** Everything the client receives, as text (the stream must end cleanly). */
async function forwardedText(chunks: Uint8Array[]): Promise<string> {
  return (await streamThrough(chunks)).text()
}

const texts = fc.array(fc.string({ unit: 'grapheme', maxLength: 12 }), { minLength: 1, maxLength: 12 })
const lineEnd = fc.constantFrom('\n', '\r\n', '\r')
const cuts = fc.array(fc.nat(4_000), { maxLength: 25 })

function errorCode(data: string | undefined): string | undefined {
  try {
    return (JSON.parse(data ?? '') as { error?: { code?: string } }).error?.code
  } catch {
    return undefined
  }
}

describe('SSE path fuzzing', () => {
  test('valid streams: exactly the upstream events and [DONE], whatever the chunk split and line ending', async () => {
    await fc.assert(
      fc.asyncProperty(texts, lineEnd, cuts, async (parts, eol, cutAt) => {
        const data = parts.map((text, i) => chunkEvent(i, text))
        const body = encoder.encode([...data, '[DONE]'].map((d) => `data: ${d}${eol}${eol}`).join(''))
        const { events, clean } = await runThrough(split(body, cutAt))
        expect(clean).toBe(true)
        expect(events).toEqual([...data, '[DONE]'])
      }),
      { numRuns: 150 },
    )
  })

  test('[DONE]: the bytes up to the end of its event go out exactly, and nothing after it', async () => {
    // Segments around [DONE]: events, comments, id/retry-only blocks, a `data` line among other fields; and
    // after [DONE] whatever the upstream sends (comments, more events) is never forwarded.
    const segment = fc.oneof(
      fc.constant(':keep-alive'),
      fc.constant('id: 7'),
      fc.constant('retry: 10\nid: 8'),
      fc.string({ unit: 'grapheme', maxLength: 8 }).map((text) => `data: ${chunkEvent(0, text)}`),
      fc.string({ unit: 'grapheme', maxLength: 8 }).map((text) => `event: x\ndata: ${chunkEvent(1, text)}\nid: 9`),
    )
    const doneSegment = fc.constantFrom('data: [DONE]', 'data:[DONE]', 'id: 3\ndata: [DONE]', ': c\ndata: [DONE]')
    await fc.assert(
      fc.asyncProperty(
        fc.array(segment, { maxLength: 6 }),
        doneSegment,
        fc.array(segment, { maxLength: 4 }),
        lineEnd,
        cuts,
        async (before, done, after, eol, cutAt) => {
          const text = (lines: string) => `${lines.replaceAll('\n', eol)}${eol}${eol}`
          const head = [...before, done].map(text).join('')
          const body = encoder.encode(head + after.map(text).join(''))
          const forwarded = await forwardedText(split(body, cutAt))
          // A cut between the last CR and LF of a CRLF stream: the CR already ended [DONE]'s event (a lone CR is a
          // line end, WHATWG SSE), so the stream ends there and the LF is not waited for.
          const cutInLastCrlf = eol === '\r\n' && forwarded === head.slice(0, -1)
          if (!cutInLastCrlf) expect(forwarded).toBe(head)
        },
      ),
      { numRuns: 200 },
    )
  })

  test('a malformed event: a prefix of the events before it, then one upstream_malformed error event', async () => {
    await fc.assert(
      fc.asyncProperty(texts, fc.nat(20), cuts, async (parts, at, cutAt) => {
        const data = parts.map((text, i) => chunkEvent(i, text))
        const bad = at % (data.length + 1)
        const withBad = [...data.slice(0, bad), '{not json', ...data.slice(bad), '[DONE]']
        const body = encoder.encode(withBad.map((d) => `data: ${d}\n\n`).join(''))
        const { events, clean } = await runThrough(split(body, cutAt))
        expect(clean).toBe(true)
        expect(errorCode(events.at(-1))).toBe('upstream_malformed')
        const before = events.slice(0, -1)
        expect(data.slice(0, bad).slice(0, before.length)).toEqual(before)
      }),
      { numRuns: 150 },
    )
  })

  test('a truncated stream (no [DONE], maybe mid-event): a prefix, then one upstream_truncated error event', async () => {
    await fc.assert(
      fc.asyncProperty(texts, fc.nat(400), cuts, async (parts, trim, cutAt) => {
        const data = parts.map((text, i) => chunkEvent(i, text))
        const full = encoder.encode(data.map((d) => `data: ${d}\n\n`).join(''))
        const body = full.slice(0, Math.max(0, full.byteLength - (trim % full.byteLength)))
        const { events, clean } = await runThrough(split(body, cutAt))
        expect(clean).toBe(true)
        expect(errorCode(events.at(-1))).toBe('upstream_truncated')
        const before = events.slice(0, -1)
        expect(data.slice(0, before.length)).toEqual(before)
      }),
      { numRuns: 150 },
    )
  })
})

// Transforms and usage counting in the forwarder (in-process): untouched chunks stay byte-identical, edited
// events are re-encoded with their fields, dropped events vanish, and the usage reaches the `end` event.
import type { EventSourceMessage } from 'eventsource-parser'
import { describe, expect, test } from 'vitest'
import { createDemoUpstream } from '../core/demo-upstream.ts'
import { encodeEvent, rewriteRegion } from '../core/upstream/event-rewrite.ts'
import { EventBoundaryScanner } from '../core/upstream/event-boundary.ts'
import type { TransformFactory } from '../core/upstream/transform.ts'
import { toEdit } from '../core/upstream/transform.ts'
import { UsageCounter } from '../core/upstream/usage.ts'
import { expectedContent } from './upstream/behaviour.ts'
import { contentOf, readSse, useHarness } from './upstream/harness.ts'

const harness = useHarness()
const encoder = new TextEncoder()
const decoder = new TextDecoder()

type Chunk = { choices: { delta: { content?: string } }[] }

describe('rewriteRegion', () => {
  test('copies unedited segments byte for byte, re-encodes edited ones with their fields, drops null', () => {
    const text = ': hi\n\nevent: a\nid: 7\ndata: one\n\ndata: two\r\n\r\ndata: three\n\n'
    const region = new EventBoundaryScanner(1024).push(encoder.encode(text))!
    const events: EventSourceMessage[] = [
      { event: 'a', id: '7', data: 'one' },
      { event: undefined, id: undefined, data: 'two' },
      { event: undefined, id: undefined, data: 'three' },
    ]
    const edited = rewriteRegion(region, region.bytes.length, new Map([[0, 'ONE\nline'], [1, null]]), events)
    expect(decoder.decode(edited)).toBe(': hi\n\nevent: a\nid: 7\ndata: ONE\ndata: line\n\ndata: three\n\n')
    // Up to a cut: nothing past forwardEnd.
    const cut = rewriteRegion(region, region.ends[2]!, new Map([[1, 'TWO']]), events)
    expect(decoder.decode(cut)).toBe(': hi\n\nevent: a\nid: 7\ndata: one\n\ndata: TWO\n\n')
    expect(encodeEvent({ event: undefined, id: undefined }, '{}')).toBe('data: {}\n\n')
  })

  test('toEdit: undefined keeps, null drops, strings are data, values become JSON', () => {
    expect(toEdit(undefined)).toBeUndefined()
    expect(toEdit(null)).toBeNull()
    expect(toEdit('x')).toBe('x')
    expect(toEdit({ a: 1 })).toBe('{"a":1}')
    expect(() => toEdit(() => 1)).toThrow('no JSON form')
  })
})

describe('UsageCounter', () => {
  test('prefers the upstream usage, else counts non-empty content deltas', () => {
    const counter = new UsageCounter()
    expect(counter.result()).toBeUndefined()
    counter.observe({ choices: [{ delta: { role: 'assistant', content: '' } }] })
    counter.observe({ choices: [{ delta: { content: 'a' } }, { delta: { content: 'b' } }] })
    counter.observe('not an object')
    expect(counter.result()).toEqual({
      source: 'counted',
      promptTokens: undefined,
      completionTokens: 2,
      totalTokens: undefined,
    })
    counter.observe({ choices: [], usage: { prompt_tokens: 3, completion_tokens: 9, total_tokens: 12 } })
    expect(counter.result()).toEqual({ source: 'upstream', promptTokens: 3, completionTokens: 9, totalTokens: 12 })
  })
})

describe('transforms in the forwarder', () => {
  test('no edit: the chunks are the upstream bytes; the end event carries the upstream usage', async () => {
    const seen: string[] = []
    const transform: TransformFactory = ({ id }) => ({
      event: (event) => void seen.push(`${id}:${event.data.length > 0}`),
    })
    const plain = harness.client()
    const observed = harness.client({ transform })
    const a = await readSse(await plain.stream(harness.request({ id: 't-plain', chunks: 6, eventsPerWrite: 2 })))
    const request = harness.request({ id: 't-observed', chunks: 6, eventsPerWrite: 2 })
    const b = await readSse(await observed.stream(request, { id: 'obs' }))
    const normalise = (text: string): string => text.replaceAll('t-observed', 't-plain').replace(/"created":\d+/g, '')
    expect(normalise(b.text)).toBe(normalise(a.text))
    expect(seen).toEqual(Array(8).fill('obs:true'))
    await observed.idle()
    expect(observed.log.at(-1)).toMatchObject({
      type: 'end',
      events: 8,
      usage: { source: 'upstream', promptTokens: 3, completionTokens: 6, totalTokens: 9 },
    })
  })

  test('rewrites and drops: content redacted, role chunk dropped, counts and bytes follow the output', async () => {
    const transform: TransformFactory = () => ({
      event({ json }) {
        const delta = (json as Chunk).choices[0]?.delta
        if (delta?.content === '') return null
        if (delta?.content?.startsWith('w1')) {
          delta.content = '[redacted]'
          return json
        }
        return undefined
      },
    })
    const client = harness.client({ transform })
    const read = await readSse(await client.stream(harness.request({ id: 't-redact', chunks: 4, eventsPerWrite: 3 })))
    expect(contentOf(read.events)).toBe(expectedContent(4).replace('w1 ', '[redacted]'))
    expect(read.events.some((event) => event.data.includes('"role"'))).toBe(false)
    await client.idle()
    const end = client.log.at(-1)
    expect(end).toMatchObject({ type: 'end', outcome: 'completed', events: 1 + 4 + 1 - 1, bytes: read.text.length })
  })

  test('a chunk whose events are all dropped forwards nothing, and the stream goes on', async () => {
    const client = harness.client({ transform: () => ({ event: () => null }) })
    const read = await readSse(await client.stream(harness.request({ id: 't-drop-all', chunks: 3 })))
    expect(read.events.map((event) => event.data)).toEqual(['[DONE]'])
    await client.idle()
    expect(client.log.map((event) => event.type)).toEqual(['start', 'acquire', 'firstChunk', 'end'])
  })

  test('a throwing factory ends the stream with an error event before any data', async () => {
    const client = harness.client({
      transform: () => {
        throw new Error('factory bug')
      },
    })
    const read = await readSse(await client.stream(harness.request({ id: 't-factory', chunks: 5, stallAfter: 1 })))
    expect(read.events.map((event) => JSON.parse(event.data).error?.code)).toEqual(['internal_error'])
    expect((await harness.upstream.waitForClosed('t-factory')).outcome).toBe('aborted')
  })

  test('usage is counted from content deltas when the upstream sends none (demo upstream)', async () => {
    const demo = createDemoUpstream({ timeToFirstTokenMs: 0, interTokenMs: 0, maxTokens: 7 })
    const client = harness.client({ fetch: demo as typeof fetch })
    const body = JSON.stringify({ stream: true, messages: [{ role: 'user', content: 'hi' }] })
    const request = { url: 'http://demo.invalid/v1/chat/completions', body }
    const read = await readSse(await client.stream(request))
    expect(read.events.at(-1)!.data).toBe('[DONE]')
    await client.idle()
    expect(client.log.at(-1)).toMatchObject({
      usage: { source: 'counted', completionTokens: 7, promptTokens: undefined },
    })
  })
})

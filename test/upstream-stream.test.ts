// The streaming call's body against the real test upstream over loopback: forwarding, timeouts that must and
// must not fire, truncation, malformed data, heartbeats, and user code that throws.
import { describe, expect, test } from 'vitest'
import { expectedContent } from './upstream/behaviour.ts'
import { contentOf, errorOf, readSse, RUNNER, useHarness } from './upstream/harness.ts'

const harness = useHarness()

describe('stream()', () => {
  test('forwards the whole upstream stream and reports start, acquire, firstChunk, end', async () => {
    const client = harness.client()
    const response = await client.stream(harness.request({ id: 'happy', chunks: 20 }))
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toBe('text/event-stream; charset=utf-8')
    expect(response.headers.get('x-request-id')).toBe('happy')
    const read = await readSse(response)
    expect(read.error).toBeUndefined()
    expect(contentOf(read.events)).toBe(expectedContent(20))
    expect(read.events.at(-1)!.data).toBe('[DONE]')
    expect(read.events).toHaveLength(1 + 20 + 1 + 1)
    await client.idle()
    expect(client.log.map((event) => event.type)).toEqual(['start', 'acquire', 'firstChunk', 'end'])
    expect(client.log.at(-1)).toMatchObject({ outcome: 'completed', status: 200, attempts: 1, events: 22 })
    // After [DONE] the body is read to its end, so the upstream sees a completed response, not an abort.
    expect((await harness.upstream.waitForClosed('happy')).outcome).toBe('completed')
  })

  test('holds the permits for the whole stream and gives them back exactly once', async () => {
    const client = harness.client({ streamWeight: 3 })
    const response = await client.stream(harness.request({ id: 'held', chunks: 3, stallAfter: 1, stallMs: 200 }))
    const reader = response.body!.getReader()
    await reader.read()
    expect(harness.semaphore.available).toBe(harness.semaphore.capacity - 3)
    while (!(await reader.read()).done);
    await client.idle()
    expect(harness.semaphore.available).toBe(harness.semaphore.capacity)
  })

  test('forwards upstream chunks as they come: whole events, several per chunk, never split per event', async () => {
    const client = harness.client()
    const read = await readSse(
      await client.stream(harness.request({ id: 'batched', chunks: 29, eventsPerWrite: 8, delay: 5 })),
    )
    expect(contentOf(read.events)).toBe(expectedContent(29))
    // 32 events in writes of 8: four chunks arrive (TCP may merge some, never split an event).
    expect(read.chunks.length).toBeLessThanOrEqual(4)
    for (const chunk of read.chunks) expect(chunk.endsWith('\n\n')).toBe(true)
  })

  test('a stream longer than queueTimeoutMs is not cut by it', async () => {
    const client = harness.client({ queueTimeoutMs: 150 })
    const started = performance.now()
    const read = await readSse(await client.stream(harness.request({ id: 'long', chunks: 8, delay: 60 })))
    expect(performance.now() - started).toBeGreaterThan(400)
    expect(read.error).toBeUndefined()
    expect(contentOf(read.events)).toBe(expectedContent(8))
  })

  test('idle timeout: a stalled upstream gets an error event, is aborted, and the stream ends', async () => {
    const client = harness.client({ idleTimeoutMs: 150 })
    const response = await client.stream(harness.request({ id: 'idle', chunks: 5, stallAfter: 2 }))
    const started = performance.now()
    const read = await readSse(response)
    const elapsed = performance.now() - started
    expect(read.error).toBeUndefined()
    expect(contentOf(read.events)).toBe(expectedContent(2))
    expect(errorOf(read.events)).toMatchObject({ code: 'idle_timeout', type: 'server_error' })
    expect(elapsed).toBeGreaterThanOrEqual(140)
    expect(elapsed).toBeLessThan(1_000)
    expect((await harness.upstream.waitForClosed('idle')).outcome).toBe('aborted')
    await client.idle()
    expect(client.log.find((event) => event.type === 'error')).toMatchObject({
      code: 'ERR_IDLE_TIMEOUT',
      afterFirstChunk: true,
    })
  })

  test('idle timeout is reset by every chunk: a slow but steady upstream is never cut', async () => {
    // Gaps of 50 ms against an idle timeout of 400 ms (room for a loaded machine), 650 ms in total.
    const client = harness.client({ idleTimeoutMs: 400 })
    const started = performance.now()
    const read = await readSse(await client.stream(harness.request({ id: 'steady', chunks: 12, delay: 50 })))
    expect(performance.now() - started).toBeGreaterThan(600)
    expect(errorOf(read.events)).toBeUndefined()
    expect(contentOf(read.events)).toBe(expectedContent(12))
  })

  test('idle timeout runs only while waiting on the upstream: a client not reading does not trip it', async () => {
    const client = harness.client({ idleTimeoutMs: 100 })
    // 30 writes 8 ms apart: the upstream takes ≥ 230 ms, all of it while the client is not reading.
    const response = await client.stream(harness.request({ id: 'slow-client', chunks: 28, delay: 8 }))
    const reader = response.body!.getReader()
    const first = await reader.read()
    const pausedAt = performance.now()
    expect((await harness.upstream.waitForClosed('slow-client')).outcome).toBe('completed')
    expect(performance.now() - pausedAt).toBeGreaterThan(2 * 100)
    reader.releaseLock()
    const read = await readSse(response)
    expect(errorOf(read.events)).toBeUndefined()
    expect(new TextDecoder().decode(first.value) + read.text).toContain('data: [DONE]')
  })

  test('upstream EOF without [DONE] is an error event, never a clean end', async () => {
    const client = harness.client()
    const read = await readSse(await client.stream(harness.request({ id: 'nodone', chunks: 3, noDone: true })))
    expect(read.error).toBeUndefined()
    expect(contentOf(read.events)).toBe(expectedContent(3))
    expect(errorOf(read.events)).toMatchObject({ code: 'upstream_truncated' })
  })

  test('a connection cut mid-event: the partial event is never forwarded, an error event follows', async () => {
    const client = harness.client()
    const read = await readSse(
      await client.stream(harness.request({ id: 'cut-mid', chunks: 6, cutAfter: 3, midEvent: true })),
    )
    expect(contentOf(read.events)).toBe(expectedContent(3))
    expect(errorOf(read.events)).toMatchObject({ code: 'upstream_truncated' })
    // Every event but the error is a whole chat.completion.chunk: nothing of the half-written one leaked.
    for (const event of read.events.slice(0, -1)) expect(JSON.parse(event.data).object).toBe('chat.completion.chunk')
    expect(read.text.split('\n\n').filter(Boolean)).toHaveLength(read.events.length)
  })

  test('malformed data: earlier events of its chunk are forwarded, then one error event, nothing after', async () => {
    const client = harness.client()
    // Role + 2 contents + the malformed event + more, all in one write.
    const request = harness.request({ id: 'malformed', chunks: 5, malformedAfter: 2, eventsPerWrite: 20 })
    const read = await readSse(await client.stream(request))
    expect(contentOf(read.events)).toBe(expectedContent(2))
    expect(read.events).toHaveLength(1 + 2 + 1)
    expect(errorOf(read.events)).toMatchObject({ code: 'upstream_malformed', type: 'server_error' })
    expect(read.text).not.toContain('{not json')
    expect((await harness.upstream.waitForClosed('malformed')).closedAt).toBeDefined()
  })

  test('a huge event is forwarded whole; one over maxEventBytes becomes an error event', async () => {
    const client = harness.client({ maxEventBytes: 1024 * 1024 })
    const fits = await readSse(
      await client.stream(harness.request({ id: 'huge-ok', chunks: 2, hugeEvent: 512 * 1024 })),
    )
    expect(contentOf(fits.events)).toBe(expectedContent(2, 0, 512 * 1024))
    const tooBig = await readSse(
      await client.stream(harness.request({ id: 'huge-bad', chunks: 2, hugeEvent: 2 * 1024 * 1024 })),
    )
    expect(errorOf(tooBig.events)).toMatchObject({ code: 'upstream_malformed' })
    expect(tooBig.text.length).toBeLessThan(1024 * 1024)
  })

  test('heartbeats flow while the upstream is quiet, never inside a held-back half event', async () => {
    const client = harness.client({ heartbeatMs: 40 })
    const request = harness.request({ id: 'heartbeat', chunks: 3, stallAfter: 1, stallMs: 300, midEvent: true })
    const read = await readSse(await client.stream(request))
    expect(read.comments.filter((comment) => comment === 'keep-alive').length).toBeGreaterThanOrEqual(3)
    expect(contentOf(read.events)).toBe(expectedContent(3))
    expect(read.events.at(-1)!.data).toBe('[DONE]')
    // Each heartbeat sits between whole events.
    for (const part of read.text.split('\n\n').filter(Boolean)) {
      expect(part === ': keep-alive' || part.startsWith('data: ')).toBe(true)
    }
  })

  test('an onEvent hook that throws ends the stream with an error event and leaks nothing', async () => {
    let seen = 0
    // A worker pool cannot take a function: there the same hook is a transform module.
    const client = RUNNER === 'pool'
      ? harness.client({ transformModule: new URL('./fixtures/transforms/throw-on-third.ts', import.meta.url) })
      : harness.client({
        onEvent: () => {
          if (++seen === 3) throw new Error('hook bug')
        },
      })
    const read = await readSse(await client.stream(harness.request({ id: 'hook', chunks: 10, stallAfter: 5 })))
    expect(read.events).toHaveLength(2 + 1)
    expect(errorOf(read.events)).toEqual({
      message: 'Internal error while streaming',
      type: 'server_error',
      code: 'internal_error',
    })
    expect((await harness.upstream.waitForClosed('hook')).outcome).toBe('aborted')
  })

  test('a throwing lifecycle listener is reported and breaks nothing', async () => {
    const reported: string[] = []
    const { createStreamTelemetry } = await import('../core/telemetry/stream-telemetry.ts')
    const telemetry = createStreamTelemetry({
      onListenerError: (error, event) => reported.push(`${event.type}: ${(error as Error).message}`),
    })
    for (const type of ['start', 'firstChunk', 'end'] as const) {
      telemetry.events.on(type, () => {
        throw new Error(`listener of ${type}`)
      })
    }
    const client = harness.client({ telemetry })
    const read = await readSse(await client.stream(harness.request({ id: 'listener', chunks: 4 })))
    expect(contentOf(read.events)).toBe(expectedContent(4))
    await client.idle()
    expect(reported).toEqual(['start: listener of start', 'firstChunk: listener of firstChunk', 'end: listener of end'])
  })

  test('a shutdown signal ends a live stream with an error event built from its reason', async () => {
    const client = harness.client()
    const shutdown = new AbortController()
    const response = await client.stream(harness.request({ id: 'shutdown', chunks: 5, stallAfter: 2 }), {
      shutdownSignal: shutdown.signal,
    })
    const reader = response.body!.getReader()
    await reader.read()
    reader.releaseLock()
    shutdown.abort(Object.assign(new Error('The gateway shut down'), { code: 'server_shutdown', type: 'server_error' }))
    const read = await readSse(response)
    expect(errorOf(read.events)).toEqual({
      message: 'The gateway shut down',
      type: 'server_error',
      code: 'server_shutdown',
    })
    expect((await harness.upstream.waitForClosed('shutdown')).outcome).toBe('aborted')
  })
})

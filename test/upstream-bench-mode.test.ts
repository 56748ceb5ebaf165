// The test upstream's benchmark mode (test/upstream/bench-mode.ts): same wire events and records, cheaper.
import { afterAll, beforeAll, expect, test } from 'vitest'
import { expectedContent, mockModel } from './upstream/behaviour.ts'
import { startUpstream, type TestUpstream } from './upstream/server.ts'

let normal: TestUpstream
let bench: TestUpstream
beforeAll(async () => {
  normal = await startUpstream()
  bench = await startUpstream({ bench: true })
})
afterAll(async () => {
  await normal.close()
  await bench.close()
})

function post(upstream: TestUpstream, model: string, signal?: AbortSignal): Promise<Response> {
  return fetch(`${upstream.url}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    signal,
  })
}

/** The data lines of a body, with the per-second `created` field blanked (two servers, two clocks). */
function dataLines(text: string): string[] {
  return text.split('\n').filter((line) => line.startsWith('data: ')).map((line) => line.replace(/"created":\d+/, ''))
}

test('a plain stream carries the same events as the normal mode, twice in a row (precomputed bytes reused)', async () => {
  for (const eventsPerWrite of [1, 4]) {
    const model = mockModel({ id: `same-${eventsPerWrite}`, chunks: 7, pad: 3, eventsPerWrite })
    const expected = dataLines(await (await post(normal, model)).text())
    for (let round = 0; round < 2; round++) {
      const response = await post(bench, model)
      expect(response.headers.get('content-type')).toBe('text/event-stream; charset=utf-8')
      expect(dataLines(await response.text())).toEqual(expected)
    }
    const records = bench.attempts(`same-${eventsPerWrite}`)
    expect(records.map((record) => record.attempt)).toEqual([1, 2])
    expect(records[1]).toMatchObject({ outcome: 'completed', chunksWritten: 7, status: 200, body: '', headers: {} })
  }
  expect(expectedContent(7, 3)).toContain('w6 xxx')
})

test('a client leaving is recorded with its close time (what the disconnect measurement reads)', async () => {
  const controller = new AbortController()
  const response = await post(bench, mockModel({ id: 'leave', chunks: 50, delay: 20 }), controller.signal)
  const reader = response.body!.getReader()
  await reader.read()
  controller.abort()
  const record = await bench.waitForClosed('leave')
  expect(record.outcome).toBe('aborted')
  const served = (await (await fetch(`${new URL(bench.url).origin}/__upstream/requests?id=leave`)).json()) as unknown[]
  expect(served).toEqual([expect.objectContaining({ id: 'leave', closedAt: record.closedAt })])
})

test('fault parameters still work (they take the normal path)', async () => {
  const failed = await post(bench, mockModel({ id: 'fault', fail: 503, failTimes: 1 }))
  expect(failed.status).toBe(503)
  await failed.text()
  const retried = await post(bench, mockModel({ id: 'fault', chunks: 2, malformedAfter: 1 }))
  expect(await retried.text()).toContain('data: {not json')
  expect(bench.attempts('fault').map((record) => record.attempt)).toEqual([1, 2])
})

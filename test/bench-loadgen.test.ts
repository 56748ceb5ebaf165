/**
 * The load generator's numbers are only worth publishing if they are right: checked here against a tiny upstream
 * whose behaviour is known exactly (events per stream, time to first event, failures), including lines split
 * across TCP chunks, the wall-clock cap and the loopback-only rule.
 */
import { createServer } from 'node:http'
import type { Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { disconnectDelays, idFromModel, withRequestIds } from '../bench/e2e/disconnect-delays.ts'
import { runLoad } from '../bench/e2e/loadgen.ts'
import { assertLoopbackUrl, isLoopbackHost } from '../bench/e2e/loopback.ts'
import { distribution, median, percentile } from '../bench/e2e/percentiles.ts'
import { readRssBytes } from '../bench/e2e/rss-sampler.ts'
import { SseCounter } from '../bench/e2e/sse-counter.ts'
import { startUpstream } from './upstream/server.ts'
import type { TestUpstream } from './upstream/server.ts'

const encoder = new TextEncoder()
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Behaviour is chosen per request by the model string, e.g. `events=5&ttft=80&gap=2&mode=truncate`. */
interface Knobs {
  events: number
  ttft: number
  gap: number
  mode: string
  split: boolean
}

const closes: number[] = []
let connections = 0

async function serveStream(knobs: Knobs, res: ServerResponse): Promise<void> {
  if (knobs.mode === 'status') {
    res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":{"message":"overloaded"}}')
    return
  }
  if (knobs.mode === 'hang') return // never answers: the client's timeout must fire
  res.writeHead(200, { 'content-type': 'text/event-stream' })
  res.flushHeaders()
  res.on('close', () => closes.push(performance.timeOrigin + performance.now()))
  await sleep(knobs.ttft)
  res.write(': keep-alive comment, not an event\n\n')
  for (let i = 0; i < knobs.events && !res.destroyed; i++) {
    if (i > 0 && knobs.gap > 0) await sleep(knobs.gap)
    const event = `data: {"choices":[{"index":0,"delta":{"content":" token${i}"}}]}\n\n`
    if (knobs.split) {
      // Byte by byte in three writes across event-loop turns, so the client sees lines cut at odd places.
      const third = Math.ceil(event.length / 3)
      for (let at = 0; at < event.length; at += third) {
        res.write(event.slice(at, at + third))
        await sleep(1)
      }
    } else {
      res.write(event)
    }
  }
  if (knobs.mode === 'truncate') {
    await sleep(20) // let the events reach the socket first: destroy() drops writes still queued
    return void res.destroy()
  }
  if (knobs.mode === 'error-event') res.write('event: error\ndata: {"error":{"message":"upstream failed"}}\n\n')
  res.end('data: [DONE]\n\n')
}

let server: Server
let base = ''

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8').on('data', (chunk: string) => (body += chunk))
    req.on('end', () => {
      const { model } = JSON.parse(body) as { model: string }
      const query = new URLSearchParams(model.split('?')[1] ?? '')
      const knobs: Knobs = {
        events: Number(query.get('events') ?? 5),
        ttft: Number(query.get('ttft') ?? 0),
        gap: Number(query.get('gap') ?? 0),
        mode: query.get('mode') ?? 'ok',
        split: query.has('split'),
      }
      void serveStream(knobs, res)
    })
  })
  server.on('connection', () => connections++)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})

afterAll(async () => {
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
})

describe('SseCounter', () => {
  const feed = (text: string, cuts: number[]): SseCounter => {
    const counter = new SseCounter()
    const bytes = encoder.encode(text)
    let at = 0
    for (const cut of [...cuts, bytes.length]) {
      counter.push(bytes.subarray(at, cut))
      at = cut
    }
    return counter
  }
  const stream =
    ': comment\n\nid: 1\ndata: {"a":1}\n\ndata:{"b":2}\r\n\r\n' +
    'data: {"long":"' + 'x'.repeat(100) + '"}\ndata: second line, same event\n\n' +
    'event: error\ndata: {"message":"bad"}\n\ndata: {"error":{"message":"worse"}}\n\ndata: [DONE]\n\n'

  it('counts data events, error events and [DONE] whatever the chunk boundaries', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      for (const second of [cut, Math.min(stream.length, cut + 3), Math.min(stream.length, cut + 17)]) {
        const counter = feed(stream, [cut, second])
        expect({ cut, second, events: counter.events, errors: counter.errorEvents, done: counter.done }).toEqual({
          cut, second, events: 3, errors: 2, done: true,
        })
      }
    }
    const byteByByte = feed(stream, Array.from({ length: stream.length }, (_, i) => i))
    expect([byteByByte.events, byteByByte.errorEvents, byteByByte.done]).toEqual([3, 2, true])
  })

  it('does not take a token that merely contains [DONE] for the end of the stream', () => {
    const counter = feed('data: {"content":"[DONE]"}\n\n', [])
    expect([counter.events, counter.done]).toEqual([1, false])
  })
})

describe('percentiles', () => {
  it('uses nearest rank and ignores failed runs in medians', () => {
    const values = Array.from({ length: 100 }, (_, i) => i + 1)
    expect([percentile(values, 50), percentile(values, 99), percentile(values, 100)]).toEqual([50, 99, 100])
    expect(distribution([3, 1, 2])).toMatchObject({ count: 3, p50: 2, max: 3 })
    expect(median([5, Number.NaN, 1, 3])).toBe(3)
  })
})

describe('loopback rule', () => {
  it('accepts loopback addresses only', () => {
    for (const host of ['127.0.0.1', '127.1.2.3', 'localhost', '[::1]']) expect(isLoopbackHost(host)).toBe(true)
    for (const host of ['10.0.0.1', 'example.com', '0.0.0.0', '[::]', '128.0.0.1']) {
      expect(isLoopbackHost(host)).toBe(false)
    }
  })

  it('refuses a non-loopback target before opening any connection', async () => {
    await expect(runLoad({ url: 'http://192.0.2.1:80', concurrency: 1, requests: 1, maxSeconds: 1 })).rejects.toThrow(
      /only targets loopback/,
    )
    expect(() => assertLoopbackUrl('ftp://127.0.0.1/')).toThrow(/http/)
  })
})

describe('runLoad against a known upstream', () => {
  it('counts exactly N × events and completes every stream', async () => {
    const report = await runLoad({ url: base, concurrency: 8, requests: 40, maxSeconds: 20, model: 'm?events=7&gap=1' })
    expect(report).toMatchObject({ started: 40, completed: 40, unfinished: 0, events: 280, stoppedByCap: false })
    expect(report.eventsPerStream).toEqual({ min: 7, max: 7 })
    expect(report.errors).toEqual({ connect: 0, http: 0, timeout: 0, errorEvent: 0, truncated: 0 })
    expect(report.ttfeMs.count).toBe(40)
    expect(report.eventsPerSecond).toBeCloseTo(280 / report.wallSeconds, 6)
  })

  it('counts events split across chunks', async () => {
    const report = await runLoad({ url: base, concurrency: 4, requests: 8, maxSeconds: 20, model: 'm?events=4&split' })
    expect(report).toMatchObject({ completed: 8, events: 32 })
  })

  it('measures time to first event from dispatch: never below the upstream time to first token', async () => {
    const report = await runLoad({
      url: base, concurrency: 5, requests: 10, maxSeconds: 20, model: 'm?events=3&ttft=80',
    })
    expect(report.completed).toBe(10)
    expect(report.ttfeMs.p50).toBeGreaterThanOrEqual(79) // timers may fire up to 1 ms early on some kernels
    expect(report.ttfeMs.p99).toBeLessThan(2000)
    expect(report.durationMs.p50).toBeGreaterThanOrEqual(report.ttfeMs.p50)
  })

  it('classifies HTTP status, truncated stream, error event, connect failure and timeout', async () => {
    const run = (model: string, extra: { url?: string; timeoutMs?: number } = {}) =>
      runLoad({ url: base, concurrency: 2, requests: 3, maxSeconds: 20, model, ...extra })
    const [status, truncated, errorEvent, timeout] = await Promise.all([
      run('m?mode=status'),
      run('m?mode=truncate&events=2'),
      run('m?mode=error-event&events=2'),
      run('m?mode=hang', { timeoutMs: 300 }),
    ])
    expect(status.errors.http).toBe(3)
    expect(status.httpStatuses).toEqual({ 503: 3 })
    expect(truncated.errors.truncated).toBe(3)
    expect(truncated.events).toBe(6) // the events before the cut still count
    expect(errorEvent.errors.errorEvent).toBe(3)
    expect(timeout.errors.timeout).toBe(3)
    for (const report of [status, truncated, errorEvent, timeout]) expect(report.completed).toBe(0)

    // A port nobody listens on: bind one, note it, close it.
    const probe = createServer()
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
    const deadPort = (probe.address() as AddressInfo).port
    await new Promise((resolve) => probe.close(resolve))
    const refused = await run('m', { url: `http://127.0.0.1:${deadPort}` })
    expect(refused.errors.connect).toBe(3)
  })

  it('stops by itself at the wall-clock cap and reports the streams it cut as unfinished', async () => {
    const startedAt = performance.now()
    const report = await runLoad({
      url: base, concurrency: 4, requests: 1000, maxSeconds: 0.5, model: 'm?events=100&gap=20',
    })
    const elapsed = performance.now() - startedAt
    expect(elapsed).toBeLessThan(1500)
    expect(report.stoppedByCap).toBe(true)
    expect(report.completed).toBe(0)
    expect(report.unfinished).toBe(4)
    expect(report.started).toBe(4)
    expect(report.wallSeconds).toBeGreaterThanOrEqual(0.45)
    expect(Object.values(report.errors).every((n) => n === 0)).toBe(true)
  })

  it('disconnect mode aborts after K events and records when, comparable with the server clock', async () => {
    closes.length = 0
    const report = await runLoad({
      url: base, concurrency: 3, requests: 6, maxSeconds: 20, model: 'm?events=50&gap=10', disconnectAfterEvents: 3,
    })
    expect(report).toMatchObject({ disconnected: 6, completed: 0 })
    expect(Object.values(report.errors).every((n) => n === 0)).toBe(true)
    expect(report.disconnects).toHaveLength(6)
    await sleep(50)
    expect(closes).toHaveLength(6)
    // Each server-side close follows a client abort by a little (same epoch-ms clock on both sides).
    const aborts = report.disconnects.map((d) => d.abortedAt).sort((a, b) => a - b)
    closes.sort((a, b) => a - b)
    closes.forEach((closedAt, i) => {
      expect(closedAt - aborts[i]!).toBeGreaterThanOrEqual(-1)
      expect(closedAt - aborts[i]!).toBeLessThan(200)
    })
  })

  it('warms up on the same connections without counting the warmup', async () => {
    const before = connections
    const report = await runLoad({
      url: base, concurrency: 4, requests: 8, maxSeconds: 20, model: 'm?events=3', warmupRequests: 4,
      warmupModel: 'm?events=9',
    })
    expect(report).toMatchObject({ started: 8, completed: 8, events: 24 })
    expect(connections - before).toBe(4) // the measured streams reused the warmup's keep-alive connections
  })

  it('samples the target RSS when given its pid', async () => {
    const report = await runLoad({ url: base, concurrency: 4, requests: 8, maxSeconds: 20, targetPid: process.pid })
    expect(report.rss?.idleBytes).toBeGreaterThan(1e6)
    expect(report.rss?.peakBytes).toBeGreaterThanOrEqual(report.rss!.idleBytes * 0.5)
    expect(report.rss?.activeStreams).toBe(4)
    expect(readRssBytes(2 ** 22 + 12345)).toBeUndefined()
  })
})

describe('runLoad against the test upstream (the benchmark upstream)', () => {
  let upstream: TestUpstream
  beforeAll(async () => {
    upstream = await startUpstream()
  })
  afterAll(() => upstream.close())

  const run = (model: string, requests = 4) =>
    runLoad({ url: upstream.url, concurrency: 2, requests, maxSeconds: 20, model })

  it('counts its OpenAI shape: role + chunks + final data events, then [DONE]', async () => {
    const report = await run('mock?chunks=50', 6)
    expect(report).toMatchObject({ completed: 6, events: 6 * 52, eventsPerStream: { min: 52, max: 52 } })
  })

  it('TTFE is at least its time to first token', async () => {
    const report = await run('mock?chunks=3&ttft=100')
    expect(report.ttfeMs.count).toBe(4)
    expect(report.ttfeMs.p50).toBeGreaterThanOrEqual(99)
  })

  it('classifies its injected faults', async () => {
    const [status, cut, noDone, errorEvent] = await Promise.all([
      run('mock?fail=503'),
      run('mock?chunks=10&cutAfter=3'),
      run('mock?chunks=10&noDone=1'),
      run('mock?chunks=10&errorEvent=2'),
    ])
    expect(status.httpStatuses).toEqual({ 503: 4 })
    expect(cut.errors.truncated).toBe(4)
    expect(noDone.errors.truncated).toBe(4)
    expect(errorEvent.errors.errorEvent).toBe(4)
  })

  it('times client abort → upstream close from the upstream records', async () => {
    const model = withRequestIds('mock?chunks=50&delay=10', 'lg-')
    expect(model).toBe('mock?chunks=50&delay=10&id=lg-{i}')
    const report = await runLoad({
      url: upstream.url, concurrency: 3, requests: 6, maxSeconds: 20, model, disconnectAfterEvents: 4,
    })
    const idFor = (index: number): string => idFromModel(model.replaceAll('{i}', String(index)))!
    const delays = await disconnectDelays(upstream.url, report.disconnects, idFor)
    expect(delays).toMatchObject({ count: 6, neverClosed: 0 })
    expect(delays.p50).toBeGreaterThanOrEqual(-1) // same epoch clock on both sides
    expect(delays.max).toBeLessThan(500)
    for (let i = 0; i < 6; i++) expect(upstream.attempts(`lg-${i}`)[0]?.outcome).toBe('aborted')
  })
})

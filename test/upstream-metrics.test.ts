// Metrics through a real OpenTelemetry SDK MeterProvider with an in-memory (pull) reader: the values recorded
// for completed, retried, failed and abandoned streams.
import {
  AggregationTemporality,
  type DataPoint,
  type Histogram,
  MeterProvider,
  type MetricData,
  MetricReader,
} from '@opentelemetry/sdk-metrics'
import { beforeEach, describe, expect, test } from 'vitest'
import { createStreamTelemetry } from '../core/telemetry/stream-telemetry.ts'
import { readSse, useHarness } from './upstream/harness.ts'

class PullReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE })
  }
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

const harness = useHarness()
let reader: PullReader
let provider: MeterProvider

beforeEach(() => {
  reader = new PullReader()
  provider = new MeterProvider({ readers: [reader] })
})

async function collect(): Promise<Map<string, MetricData>> {
  const { resourceMetrics } = await reader.collect()
  return new Map(
    resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics).map((metric) => [metric.descriptor.name, metric]),
  )
}

function points(metrics: Map<string, MetricData>, name: string): DataPoint<unknown>[] {
  return (metrics.get(name)?.dataPoints ?? []) as DataPoint<unknown>[]
}

function value(metrics: Map<string, MetricData>, name: string, attributes: Record<string, string>): unknown {
  const point = points(metrics, name).find((p) =>
    Object.entries(attributes).every(([key, v]) => p.attributes[key] === v)
  )
  return point?.value
}

describe('metrics', () => {
  test('a completed, retried stream records duration, time to first chunk, chunks, retries, queue waits', async () => {
    const telemetry = createStreamTelemetry({
      meter: provider.getMeter('sluice'),
      permits: { shared: harness.semaphore },
    })
    const client = harness.client({ telemetry, streamWeight: 2 })
    const response = await client.stream(harness.request({ id: 'm-ok', chunks: 12, ttft: 30, fail: 503, failTimes: 1 }))
    const during = await collect()
    expect(value(during, 'active_streams', { kind: 'stream' })).toBe(1)
    expect(value(during, 'permits_in_use', { semaphore: 'shared' })).toBe(2)
    await readSse(response)
    await client.idle()
    const after = await collect()
    expect(value(after, 'active_streams', { kind: 'stream' })).toBe(0)
    expect(value(after, 'permits_in_use', { semaphore: 'shared' })).toBe(0)
    expect(value(after, 'retries_total', { kind: 'stream', reason: 'upstream_status' })).toBe(1)
    const chunks = value(after, 'chunks_per_stream', { kind: 'stream' }) as Histogram
    expect(chunks).toMatchObject({ count: 1, sum: 1 + 12 + 1 })
    const duration = value(after, 'stream_duration_seconds', { kind: 'stream', outcome: 'completed' }) as Histogram
    const end = client.log.find((event) => event.type === 'end')!
    expect(duration.count).toBe(1)
    expect(duration.sum).toBeCloseTo(end.durationMs / 1000, 6)
    const firstChunk = value(after, 'time_to_first_chunk_seconds', { kind: 'stream' }) as Histogram
    expect(firstChunk.count).toBe(1)
    // ttft 30 ms on the successful attempt: at least that.
    expect(firstChunk.sum).toBeGreaterThanOrEqual(0.03)
    expect(firstChunk.sum).toBeLessThanOrEqual(duration.sum!)
    expect((value(after, 'queue_wait_seconds', { kind: 'stream' }) as Histogram).count).toBe(2)
    expect(after.get('stream_duration_seconds')!.descriptor.unit).toBe('s')
  })

  test('errors by type and client disconnects are counted', async () => {
    const telemetry = createStreamTelemetry({ meter: provider.getMeter('sluice') })
    const client = harness.client({ telemetry, idleTimeoutMs: 100 })
    await readSse(await client.stream(harness.request({ id: 'm-idle', chunks: 3, stallAfter: 1 })))
    await readSse(await client.stream(harness.request({ id: 'm-trunc', chunks: 3, noDone: true })))
    const holder = await harness.semaphore.acquire(harness.semaphore.capacity)
    await harness.client({ telemetry, queueTimeoutMs: 100 }).stream(harness.request({ id: 'm-queue' })).catch(() => {})
    holder.release()
    const controller = new AbortController()
    const response = await client.stream(harness.request({ id: 'm-gone', chunks: 3, stallAfter: 1, stallMs: 5_000 }), {
      signal: controller.signal,
    })
    const body = response.body!.getReader()
    await body.read()
    controller.abort()
    await client.idle()
    const metrics = await collect()
    expect(value(metrics, 'stream_errors_total', { kind: 'stream', type: 'idle_timeout' })).toBe(1)
    expect(value(metrics, 'stream_errors_total', { kind: 'stream', type: 'upstream_truncated' })).toBe(1)
    expect(value(metrics, 'stream_errors_total', { kind: 'stream', type: 'queue_timeout' })).toBe(1)
    expect(value(metrics, 'client_disconnects_total', { kind: 'stream' })).toBe(1)
    expect(value(metrics, 'active_streams', { kind: 'stream' })).toBe(0)
    const durations = points(metrics, 'stream_duration_seconds').map((
      p,
    ) => [p.attributes.outcome, (p.value as Histogram).count])
    expect(Object.fromEntries(durations)).toEqual({ error: 3, disconnect: 1 })
  })

  test('buffered calls are recorded with kind=buffered and no chunk histogram', async () => {
    const telemetry = createStreamTelemetry({ meter: provider.getMeter('sluice') })
    const client = harness.client({ telemetry })
    await client.complete(harness.request({ id: 'm-buffered' }, false))
    await client.idle()
    const metrics = await collect()
    expect((value(metrics, 'stream_duration_seconds', { kind: 'buffered', outcome: 'completed' }) as Histogram).count)
      .toBe(1)
    expect(points(metrics, 'chunks_per_stream')).toHaveLength(0)
  })

  test("a buffered call's end event carries the upstream's usage, a stream's too", async () => {
    const client = harness.client()
    await (await client.complete(harness.request({ id: 'u-buffered', chunks: 3 }, false))).text()
    await readSse(await client.stream(harness.request({ id: 'u-stream', chunks: 4 })))
    await client.idle()
    const ends = client.log.filter((event) => event.type === 'end')
    expect(ends.map((event) => [event.kind, event.type === 'end' ? event.usage : undefined])).toEqual([
      ['buffered', { source: 'upstream', promptTokens: 3, completionTokens: 3, totalTokens: 6 }],
      ['stream', { source: 'upstream', promptTokens: 3, completionTokens: 4, totalTokens: 7 }],
    ])
  })

  test('events are plain data: a bare sink can ship them (structured clone) to a telemetry elsewhere', async () => {
    // What a worker pool does: the client in the worker gets a sink, the main thread records the copies.
    const main = createStreamTelemetry({ meter: provider.getMeter('sluice') })
    const shipped: unknown[] = []
    const local: string[] = []
    const client = harness.client({
      telemetry: (event) => {
        const copy = structuredClone(event)
        shipped.push(copy)
        main.record(copy)
      },
    })
    const off = client.events.on('event', (event) => local.push(event.type))
    await readSse(await client.stream(harness.request({ id: 'm-shipped', chunks: 5, fail: 500, failTimes: 1 })))
    off()
    expect(main.active).toBe(0)
    expect(local).toEqual(['start', 'acquire', 'retry', 'acquire', 'firstChunk', 'end'])
    expect(shipped).toHaveLength(6)
    const metrics = await collect()
    expect(value(metrics, 'retries_total', { kind: 'stream', reason: 'upstream_status' })).toBe(1)
    expect((value(metrics, 'chunks_per_stream', { kind: 'stream' }) as Histogram).sum).toBe(7)
  })
})

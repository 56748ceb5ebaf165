/**
 * The OpenTelemetry instruments of upstream calls and how each lifecycle event moves them. Through
 * `@opentelemetry/api` only: without an SDK installed by the host every instrument is a no-op.
 * Durations come from the events' monotonic `…Ms` fields, converted to seconds.
 * @module
 */
import type { Attributes, Meter } from '@opentelemetry/api'
import type { PermitGaugeSource } from '../upstream/types.ts'
import type { StreamEvent } from './events.ts'

// Bucket advice: LLM streams last from milliseconds (errors) to minutes (long answers).
const SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600]
const CHUNK_BUCKETS = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]

export interface Instruments {
  record(event: StreamEvent): void
}

/** `ERR_IDLE_TIMEOUT` → `idle_timeout`: the same words as the SSE error event's `code`. */
export function errorType(code: string): string {
  return code.replace(/^ERR_/, '').toLowerCase()
}

export function createInstruments(meter: Meter, permits: Record<string, PermitGaugeSource> = {}): Instruments {
  const seconds = (name: string, description: string) =>
    meter.createHistogram(name, { description, unit: 's', advice: { explicitBucketBoundaries: SECONDS_BUCKETS } })
  const duration = seconds(
    'stream_duration_seconds',
    'Upstream call duration, from the call to its end (queueing included)',
  )
  const firstChunk = seconds('time_to_first_chunk_seconds', 'From the call to the first byte forwarded to the client')
  const queueWait = seconds('queue_wait_seconds', 'Wait for the rate limiter and the semaphore, per attempt')
  const chunks = meter.createHistogram('chunks_per_stream', {
    description: 'SSE data events forwarded per stream ([DONE] not counted)',
    unit: '{event}',
    advice: { explicitBucketBoundaries: CHUNK_BUCKETS },
  })
  const errors = meter.createCounter('stream_errors_total', { description: 'Failed upstream calls by error type' })
  const disconnects = meter.createCounter('client_disconnects_total', { description: 'Calls whose client left first' })
  const retries = meter.createCounter('retries_total', { description: 'Retried attempts (before the first byte only)' })
  const active = meter.createUpDownCounter('active_streams', {
    description: 'Upstream calls in flight (queued or streaming)',
  })
  const sources = Object.entries(permits)
  if (sources.length > 0) {
    const inUse = meter.createObservableGauge('permits_in_use', { description: 'Semaphore permits held' })
    inUse.addCallback((result) => {
      for (const [semaphore, source] of sources) result.observe(source.capacity - source.available, { semaphore })
    })
  }

  return {
    record(event) {
      const kind: Attributes = { kind: event.kind }
      switch (event.type) {
        case 'start':
          active.add(1, kind)
          return
        case 'acquire':
          queueWait.record(event.queueWaitMs / 1000, kind)
          return
        case 'retry':
          retries.add(1, { ...kind, reason: errorType(event.reason) })
          return
        case 'firstChunk':
          firstChunk.record(event.sinceStartMs / 1000, kind)
          return
        case 'error':
          errors.add(1, { ...kind, type: errorType(event.code) })
          return
        case 'disconnect':
          disconnects.add(1, kind)
          return
        case 'end':
          active.add(-1, kind)
          duration.record(event.durationMs / 1000, { ...kind, outcome: event.outcome })
          if (event.kind === 'stream') chunks.record(event.events, kind)
          return
      }
    },
  }
}

/**
 * One JSON line per upstream call, written when the call is over (its `end` lifecycle event): id, status, time to
 * first chunk, duration, chunks and outcome. Built from telemetry events only, so it never sees request bodies,
 * headers or keys.
 */
import type { StreamEvent } from '../../core/telemetry/events.ts'

export interface AccessLogEntry {
  time: string
  id: string
  kind: 'stream' | 'buffered'
  status: number | null
  outcome: string
  ttfc_ms: number | null
  duration_ms: number
  chunks: number
  bytes: number
  attempts: number
}

/** Returns a sink for every lifecycle event; `write` receives one JSON line per finished call. */
export function createAccessLog(write: (line: string) => void): (event: StreamEvent) => void {
  const firstChunkMs = new Map<string, number>()
  return (event) => {
    if (event.type === 'firstChunk') firstChunkMs.set(event.id, event.sinceStartMs)
    if (event.type !== 'end') return
    const ttfc = firstChunkMs.get(event.id)
    firstChunkMs.delete(event.id)
    const entry: AccessLogEntry = {
      time: new Date(event.at).toISOString(),
      id: event.id,
      kind: event.kind,
      status: event.status ?? null,
      outcome: event.outcome,
      ttfc_ms: ttfc === undefined ? null : round(ttfc),
      duration_ms: round(event.durationMs),
      chunks: event.events,
      bytes: event.bytes,
      attempts: event.attempts,
    }
    write(JSON.stringify(entry))
  }
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10
}

/**
 * The workloads of the end-to-end benchmark. Every stream is the test upstream's OpenAI shape with 50 content
 * deltas, so a stream carries 52 data events (role, 50 contents, final) plus `[DONE]`. Request counts are sized
 * so one cell runs a few seconds on 2 cores and the default 3 runs × 6 targets stay near 10 minutes.
 * @module
 */
export interface Workload {
  name: string
  concurrency: number
  /** Streams per measured run (default mode). */
  requests: number
  /** Streams per run with --quick. */
  quickRequests: number
  /** The upstream's gap between events, ms (`delay` of the test upstream). */
  delayMs: number
  /** Content deltas per stream (`chunks` of the test upstream). */
  chunks: number
  /** Disconnect mode: clients leave after this many events. */
  disconnectAfter?: number
}

const CHUNKS = 50

const grid = (concurrency: number, delayMs: number, requests: number, quickRequests: number): Workload => ({
  name: `c${concurrency}-d${delayMs}`,
  concurrency,
  requests,
  quickRequests,
  delayMs,
  chunks: CHUNKS,
})

export const WORKLOADS: readonly Workload[] = [
  grid(1, 0, 200, 50),
  grid(100, 0, 1000, 300),
  // Issue 6's throughput target is stated at C=500, delay 0.
  grid(500, 0, 1500, 1000),
  grid(1000, 0, 1500, 1000),
  grid(1, 20, 3, 2),
  grid(100, 20, 200, 100),
  // One wave of 1000 streams: each lasts ≥ 1 s at 20 ms per event, and a 2-core host cannot go much faster.
  grid(1000, 20, 1000, 1000),
  {
    name: 'disconnect',
    concurrency: 100,
    requests: 300,
    quickRequests: 100,
    delayMs: 20,
    chunks: CHUNKS,
    disconnectAfter: 5,
  },
]

/** The test upstream's model string for a workload; `{i}` gives disconnect runs a per-request id to match on. */
export function modelFor(workload: Workload): string {
  const id = workload.disconnectAfter === undefined ? '' : '&id=d{i}'
  return `mock?chunks=${workload.chunks}&delay=${workload.delayMs}${id}`
}

export function describeWorkload(workload: Workload): string {
  const what = workload.disconnectAfter === undefined
    ? `${workload.chunks} content events per stream`
    : `clients leave after ${workload.disconnectAfter} events`
  return `C=${workload.concurrency}, ${workload.delayMs} ms between events, ${what}`
}

/**
 * The test upstream's benchmark mode (`startUpstream({ bench: true })`, `main.ts --bench`): the same routes,
 * wire bytes and behaviours, at a fraction of the cost per event, so that `direct` in bench/e2e measures the
 * client and the kernel rather than this server.
 *
 * Measured before (bench/e2e, direct, one run, load ≈ 2–4): c1-d0 38k, c100-d0 55k, c1000-d0 62k events/s, with
 * the upstream's CPU spent on a JSON.stringify + encode per event, an O(n²) attempt count (a filter over every
 * record per request), a copy of every request's headers and body kept forever, and a watcher pass per write.
 * Here:
 * - a plain stream (no fault parameter) is written from event bytes precomputed once per shape (model, chunks,
 *   pad, hugeEvent, eventsPerWrite): one `res.write()` per write group, no per-event allocation;
 * - attempts are counted in a Map (O(1)); records keep no headers/body and only the last RECORD_CAP are kept;
 * - the record of a plain stream is updated with plain field writes; watchers run on open and close only.
 * Anything with a fault parameter (fail, cut*, stall*, malformed, errorEvent, noDone…) takes the normal path,
 * so every behaviour still works. Records stay readable over `GET /__upstream/requests` with per-id close times,
 * which is what the disconnect measurement needs.
 * @module
 */
import type { ServerResponse } from 'node:http'
import { sharedNow } from '../../core/clock.ts'
import type { Behaviour } from './behaviour.ts'
import { DONE_EVENT, streamEvents } from './openai-shapes.ts'
import type { RequestRecord } from './server.ts'

/** Records kept in bench mode (the newest): a disconnect run reads a few hundred, a bench cell makes ≤ 10⁴. */
export const RECORD_CAP = 20_000
/** Distinct stream shapes kept precomputed (disconnect runs give every request its own id, so its own shape). */
const SHAPE_CAP = 2_048

/** Attempt numbers per id in O(1), and the capped record list. */
export class BenchRecords {
  readonly requests: RequestRecord[]
  readonly #attempts = new Map<string, number>()

  constructor(requests: RequestRecord[]) {
    this.requests = requests
  }

  nextAttempt(id: string): number {
    const attempt = (this.#attempts.get(id) ?? 0) + 1
    this.#attempts.set(id, attempt)
    return attempt
  }

  add(record: RequestRecord): void {
    // Dropping the oldest half at once keeps this amortised O(1) (one splice per RECORD_CAP / 2 requests).
    if (this.requests.length >= RECORD_CAP) this.requests.splice(0, RECORD_CAP / 2)
    this.requests.push(record)
  }
}

/** True when the behaviour is a plain successful stream, which the fast writer serves. */
export function isPlain(behaviour: Behaviour): boolean {
  return behaviour.fail === undefined && behaviour.cutAfter === undefined && behaviour.cutBeforeBody === undefined &&
    behaviour.stallAfter === undefined && behaviour.malformedAfter === undefined &&
    behaviour.errorEvent === undefined && !behaviour.noDone && !behaviour.midEvent
}

const shapes = new Map<string, Uint8Array[]>()

/** The writes of a plain stream: role, contents, final, [DONE], grouped `eventsPerWrite` to a write. */
export function plainWrites(behaviour: Behaviour, model: string): Uint8Array[] {
  const { chunks, pad, hugeEvent, eventsPerWrite } = behaviour
  // A request without an explicit id gets `anon-N`: one shape for all of them, or nothing would ever be reused.
  const id = behaviour.id.startsWith('anon-') ? 'anon' : behaviour.id
  const key = `${id}\u0000${model}\u0000${chunks}\u0000${pad}\u0000${hugeEvent}\u0000${eventsPerWrite}`
  let writes = shapes.get(key)
  if (writes !== undefined) return writes
  const events = streamEvents({ ...behaviour, id }, model)
  const all = [events.role]
  for (let index = 0; index < chunks; index++) all.push(events.content(index))
  all.push(events.final, DONE_EVENT)
  writes = []
  for (let index = 0; index < all.length; index += eventsPerWrite) {
    const group = all.slice(index, index + eventsPerWrite)
    writes.push(group.length === 1 ? group[0]! : Buffer.concat(group))
  }
  if (shapes.size >= SHAPE_CAP) shapes.clear()
  shapes.set(key, writes)
  return writes
}

/**
 * Writes a plain stream: headers, `ttft`, then the precomputed writes with `delay` between them, awaiting
 * 'drain' when the socket buffer is full. Stops (without ending) when the client leaves.
 */
export async function writePlainStream(
  res: ServerResponse,
  record: RequestRecord,
  behaviour: Behaviour,
  closed: AbortSignal,
): Promise<void> {
  record.status = 200
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    'x-request-id': behaviour.id,
  })
  res.flushHeaders()
  record.headersAt = sharedNow()
  if (!(await pause(behaviour.ttft, closed))) return
  const writes = plainWrites(behaviour, record.model)
  const contentEnd = behaviour.chunks + 1
  let event = 0
  for (let index = 0; index < writes.length; index++) {
    if (index > 0 && behaviour.delay > 0 && !(await pause(behaviour.delay, closed))) return
    if (closed.aborted || res.destroyed) return
    const bytes = writes[index]!
    if (index === 0) record.firstByteAt = sharedNow()
    record.bytesWritten += bytes.byteLength
    record.writes++
    // Content deltas are events 1..chunks (0 is the role chunk); count the ones in this write group.
    const next = event + behaviour.eventsPerWrite
    record.chunksWritten += Math.max(0, Math.min(next, contentEnd) - Math.max(event, 1))
    event = next
    if (!res.write(bytes)) {
      record.drainWaits++
      record.paused = true
      await drained(res, closed)
      record.paused = false
    }
  }
  if (!closed.aborted && !res.destroyed) res.end()
}

function pause(ms: number, closed: AbortSignal): Promise<boolean> {
  if (closed.aborted) return Promise.resolve(false)
  if (ms <= 0) return Promise.resolve(true)
  return new Promise<boolean>((resolve) => {
    const done = (open: boolean): void => {
      clearTimeout(timer)
      closed.removeEventListener('abort', onClose)
      resolve(open)
    }
    const onClose = (): void => done(false)
    const timer = setTimeout(() => done(true), ms)
    closed.addEventListener('abort', onClose, { once: true })
  })
}

function drained(res: ServerResponse, closed: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      res.off('drain', done)
      closed.removeEventListener('abort', done)
      resolve()
    }
    res.on('drain', done)
    closed.addEventListener('abort', done, { once: true })
  })
}

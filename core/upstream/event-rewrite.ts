/**
 * Re-encoding of the chunks a transform edited. The default path forwards upstream bytes untouched; only a
 * region (the complete events of one upstream chunk) in which a transform rewrote or dropped an event comes
 * here, and within it only the edited events are re-serialised: every other segment is copied byte for byte.
 *
 * A region's segments end at its event boundaries (`region.ends`, see ./event-boundary.ts), so a segment holds
 * at most one event; it is parsed again segment by segment (as `segmentOf` in ./sse-forwarder.ts does) to number
 * the events the same way the forwarder's single pass did. The cost is paid only by edited chunks.
 * @module
 */
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import { type EventRegion, parserInput } from './event-boundary.ts'
import type { EventEdit } from './transform.ts'
import { concatBytes } from '../bytes.ts'

const encoder = new TextEncoder()

/**
 * The bytes of `region` up to `forwardEnd`, with event number `i` replaced by `edits.get(i)` (new data, or
 * nothing when null). `events` are the region's parsed events (for their `event:`/`id:` fields).
 */
export function rewriteRegion(
  region: EventRegion,
  forwardEnd: number,
  edits: ReadonlyMap<number, EventEdit>,
  events: readonly EventSourceMessage[],
): Uint8Array {
  const decoder = new TextDecoder()
  let seen = 0
  const parser = createParser({ onEvent: () => seen++ })
  const parts: Uint8Array[] = []
  let length = 0
  let start = 0
  for (const end of region.ends) {
    if (start >= forwardEnd) break
    const before = seen
    const segment = region.bytes.subarray(start, end)
    parser.feed(parserInput(decoder.decode(segment)))
    start = end
    let part: Uint8Array = segment
    if (seen > before && edits.has(before)) {
      const edit = edits.get(before)!
      if (edit === null) continue
      part = encoder.encode(encodeEvent(events[before]!, edit))
    }
    parts.push(part)
    length += part.length
  }
  return concatBytes(parts, length)
}

/** One SSE event with `data` (split into `data:` lines) and the original's `event:`/`id:` fields. */
export function encodeEvent(original: Pick<EventSourceMessage, 'event' | 'id'>, data: string): string {
  let text = ''
  if (original.event !== undefined) text += `event: ${original.event}\n`
  if (original.id !== undefined) text += `id: ${original.id}\n`
  for (const line of data.split(/\r\n|\r|\n/)) text += `data: ${line}\n`
  return `${text}\n`
}

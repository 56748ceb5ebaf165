/**
 * Counts SSE events in a byte stream without decoding it, so that at 1000 streams × 50 events the load generator
 * spends its CPU on the network and not on parsing: one native `indexOf('\n')` per line and a few byte compares on
 * the line's first bytes. Lines may be split anywhere across chunks; only the first HEAD_BYTES of a split line are
 * kept, so memory per stream is constant however long a line is.
 *
 * What counts (the OpenAI streaming shape):
 * - `data: …` line → one event, except `data: [DONE]` (sets `done`) and `data: {"error"…` (an error event);
 * - `event: error` → the event it starts is an error event, its data line is not counted as a normal event;
 * - comments (`: keep-alive`), `id:`, `retry:` and blank lines are not events.
 * The space after the colon is optional, as in the SSE spec. `\r\n` line ends are accepted.
 * @module
 */

const HEAD_BYTES = 16
const NEWLINE = 0x0a
const CARRIAGE_RETURN = 0x0d
const SPACE = 0x20

const ascii = (text: string): Uint8Array => new TextEncoder().encode(text)
const DATA = ascii('data:')
const EVENT = ascii('event:')
const DONE = ascii('[DONE]')
const ERROR_OBJECT = ascii('{"error"')
const ERROR_NAME = ascii('error')

function startsWith(buffer: Uint8Array, start: number, end: number, prefix: Uint8Array): boolean {
  if (end - start < prefix.length) return false
  for (let i = 0; i < prefix.length; i++) if (buffer[start + i] !== prefix[i]) return false
  return true
}

/** Where the parser is inside the current event (between blank lines). */
const IN_NO_EVENT = 0
const IN_DATA_EVENT = 1
const IN_ERROR_EVENT = 2
const IN_DONE_EVENT = 3

export class SseCounter {
  /** Data events, not counting `[DONE]` and error events. */
  events = 0
  errorEvents = 0
  /** The start of the first error event's data line (up to 200 bytes of what the line's chunk held), for reports. */
  firstErrorData: string | undefined
  done = false
  /** Data events that arrived after `[DONE]`: a protocol error in the target. */
  eventsAfterDone = 0
  private readonly head = new Uint8Array(HEAD_BYTES)
  private headLength = 0
  /** True while inside a line whose beginning came in an earlier chunk. */
  private inSplitLine = false
  private state = IN_NO_EVENT

  /** Feeds one network chunk; returns the number of data events it started (so callers can time the first). */
  push(chunk: Uint8Array): number {
    const before = this.events
    let start = 0
    for (;;) {
      const newline = chunk.indexOf(NEWLINE, start)
      if (newline === -1) {
        this.keepHead(chunk, start, chunk.length)
        break
      }
      if (this.inSplitLine) {
        this.keepHead(chunk, start, newline)
        this.classifyLine(this.head, 0, this.headLength)
        this.headLength = 0
        this.inSplitLine = false
      } else {
        this.classifyLine(chunk, start, newline)
      }
      start = newline + 1
    }
    return this.events - before
  }

  private keepHead(chunk: Uint8Array, start: number, end: number): void {
    if (start === end) return
    this.inSplitLine = true
    const take = Math.min(HEAD_BYTES - this.headLength, end - start)
    if (take <= 0) return
    this.head.set(chunk.subarray(start, start + take), this.headLength)
    this.headLength += take
  }

  private classifyLine(line: Uint8Array, start: number, end: number): void {
    const length = end - start
    if (length === 0 || (length === 1 && line[start] === CARRIAGE_RETURN)) {
      this.state = IN_NO_EVENT // a blank line ends the event
      return
    }
    if (startsWith(line, start, end, DATA)) {
      // Several data lines make one event: only the first one decides what the event is.
      if (this.state !== IN_NO_EVENT) return
      let value = start + DATA.length
      if (line[value] === SPACE) value++
      if (startsWith(line, value, end, DONE)) {
        this.done = true
        this.state = IN_DONE_EVENT
      } else if (startsWith(line, value, end, ERROR_OBJECT)) {
        this.errorEvents++
        this.firstErrorData ??= new TextDecoder().decode(line.subarray(value, Math.min(end, value + 200)))
        this.state = IN_ERROR_EVENT
      } else if (this.done) {
        this.eventsAfterDone++
        this.state = IN_DATA_EVENT
      } else {
        this.events++
        this.state = IN_DATA_EVENT
      }
      return
    }
    if (startsWith(line, start, end, EVENT)) {
      let value = start + EVENT.length
      if (line[value] === SPACE) value++
      if (!startsWith(line, value, end, ERROR_NAME)) return
      // `event: error` may come before or after the event's data line.
      if (this.state === IN_DATA_EVENT && !this.done) this.events--
      if (this.state !== IN_ERROR_EVENT) this.errorEvents++
      this.state = IN_ERROR_EVENT
    }
  }
}

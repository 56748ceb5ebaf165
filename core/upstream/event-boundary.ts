/**
 * Finds where complete SSE events end in a byte stream, so that only whole events are ever forwarded and an
 * unterminated tail is held back (an error event or heartbeat must never land inside a half-written event).
 *
 * This only scans for the blank line that ends an event (HTML Living Standard §9.2.6 "Interpreting an event
 * stream": lines end in CRLF, LF or CR; an empty line dispatches the event). Parsing the fields stays
 * eventsource-parser's job. The scan is one pass over new bytes only: state carries across chunks, so an event
 * split over many chunks costs O(its length), and the held tail is joined once when its boundary arrives.
 * @module
 */
import { concatBytes } from '../bytes.ts'
import { UpstreamMalformedError } from './errors.ts'

const LF = 0x0a
const CR = 0x0d

/** Complete events: `bytes` ends at an event boundary; `ends[i]` is the offset just after event i. */
export interface EventRegion {
  bytes: Uint8Array
  ends: number[]
}

export class EventBoundaryScanner {
  readonly #maxHeldBytes: number
  #held: Uint8Array[] = []
  #heldBytes = 0
  /** No character seen on the current line yet. The stream starts at a line start. */
  #lineEmpty = true
  /** The previous byte was a CR, so an LF now is the second half of CRLF, not another line end. */
  #afterCR = false
  /** That CR ended an empty line: its LF belongs to the same boundary. */
  #afterBoundaryCR = false

  /** `maxHeldBytes` bounds an unterminated event held back; more throws UpstreamMalformedError. */
  constructor(maxHeldBytes: number) {
    this.#maxHeldBytes = maxHeldBytes
  }

  /** Bytes held back (an event still waiting for its end). */
  get heldBytes(): number {
    return this.#heldBytes
  }

  /**
   * Adds `chunk`; returns the complete events now available (held bytes first), or undefined if none ended.
   * Without a held tail and with the chunk ending on a boundary, `bytes` is `chunk` itself (no copy).
   */
  push(chunk: Uint8Array): EventRegion | undefined {
    const base = this.#heldBytes
    const ends: number[] = []
    // Jump from line end to line end with the native indexOf (each position found once, so O(n) in total):
    // the bytes between line ends only matter in that they make a line non-empty.
    let index = 0
    let nextLF = chunk.indexOf(LF)
    let nextCR = chunk.indexOf(CR)
    while (index < chunk.length) {
      const at = nextLF === -1 ? nextCR : nextCR === -1 ? nextLF : Math.min(nextLF, nextCR)
      if (at !== index) {
        this.#lineEmpty = false
        this.#afterCR = false
        this.#afterBoundaryCR = false
      }
      if (at === -1) break
      if (at === nextLF) {
        nextLF = chunk.indexOf(LF, at + 1)
        if (this.#afterCR) {
          this.#afterCR = false
          // CRLF after a boundary CR: move that boundary past the LF, if it is in this chunk.
          if (this.#afterBoundaryCR && ends.length > 0) ends[ends.length - 1] = base + at + 1
          this.#afterBoundaryCR = false
        } else {
          if (this.#lineEmpty) ends.push(base + at + 1)
          this.#lineEmpty = true
        }
      } else {
        nextCR = chunk.indexOf(CR, at + 1)
        this.#afterBoundaryCR = this.#lineEmpty
        if (this.#lineEmpty) ends.push(base + at + 1)
        this.#lineEmpty = true
        this.#afterCR = true
      }
      index = at + 1
    }
    const last = ends.at(-1)
    if (last === undefined) {
      this.#hold(chunk)
      return undefined
    }
    const cut = last - base
    const bytes = base === 0 ? chunk.subarray(0, cut) : this.#joinHeld(chunk.subarray(0, cut))
    this.#held = []
    this.#heldBytes = 0
    // A copy: the consumer may transfer the forwarded chunk's buffer to another thread.
    if (cut < chunk.length) this.#hold(chunk.slice(cut))
    return { bytes, ends }
  }

  #hold(bytes: Uint8Array): void {
    if (this.#heldBytes + bytes.length > this.#maxHeldBytes) {
      throw new UpstreamMalformedError(
        `An upstream event exceeded maxEventBytes (${this.#maxHeldBytes} bytes) without ending`,
      )
    }
    this.#held.push(bytes)
    this.#heldBytes += bytes.length
  }

  #joinHeld(last: Uint8Array): Uint8Array {
    return concatBytes([...this.#held, last], this.#heldBytes + last.length)
  }
}

/**
 * The text to feed eventsource-parser for one complete event. A segment may end in a lone CR (a boundary in a
 * CR-only stream, or the CR of a CRLF whose LF is still in flight); the parser holds a trailing CR back until it
 * knows whether an LF follows, which would delay the event to the next feed. Appending the LF settles it as CRLF:
 * the same line end either way, and a real LF arriving next only adds an empty line, which dispatches nothing.
 */
export function parserInput(segment: string): string {
  return segment.endsWith('\r') ? `${segment}\n` : segment
}

/**
 * Wire format of the chunk channel: many streams multiplexed over one MessagePort (one port per worker, or one
 * per stream; the protocol does not care). Every message is one batch of frames, so a burst of chunks, events
 * and grants costs one `postMessage`, whose fixed cost (~1–2 µs, 0.4–2.1 M msgs/s on this machine) dominates
 * for SSE-sized chunks (shared/research/concurrency.md §3).
 *
 * A frame is three numbers `(op, streamId, arg)` in a flat array. Data bytes of one batch are packed into one
 * ArrayBuffer (DATA's `arg` is its byte length; offsets are implied by order). Values that are not numbers
 * (events, error reasons) travel in a side array and `arg` is their index.
 *
 * Worker → main: OPEN, DATA, EVENT, END, ERROR. Main → worker: GRANT (arg = bytes of credit), CANCEL (arg = index
 * of the reason); main never sends bytes.
 * Frames of one stream are processed in order; OPEN is always the first frame of a stream.
 * @module
 */

/** First element of every message, so the port can be shared with other traffic that the hubs ignore. */
export const WIRE_TAG = 'sluice-chunk/1'

/** Worker → main: a writer was opened; binds the stream to the port it arrived on. */
export const OP_OPEN = 1
/** Worker → main: `arg` bytes of the batch buffer belong to the stream. */
export const OP_DATA = 2
/** Worker → main: `values[arg]` is a lifecycle event (any structured-cloneable value). */
export const OP_EVENT = 3
/** Worker → main: the stream ended normally. */
export const OP_END = 4
/** Worker → main: the stream failed; `values[arg]` is the wire form of the error. */
export const OP_ERROR = 5
/** Main → worker: the consumer consumed `arg` more bytes; the producer may send that many more. */
export const OP_GRANT = 6
/** Main → worker: the consumer cancelled; `values[arg]` is the wire form of the reason. */
export const OP_CANCEL = 7

/** Numbers per frame in the flat frame array. */
export const FRAME_SIZE = 3

/** One message, either direction: `[WIRE_TAG, frames, packed data bytes or null, values or null]`. */
export type WireBatch = [typeof WIRE_TAG, number[], ArrayBuffer | null, unknown[] | null]

/**
 * What the main thread sends to the worker (inside the task) so the worker can open the writer of a stream.
 * Structured-cloneable.
 */
export interface ChunkChannelHandle {
  /** Stream id, unique per `ChunkReaderHub`. */
  readonly id: number
  /** Credit window in bytes: the most bytes the producer may have sent that the consumer has not read. */
  readonly window: number
}

/** True when `data` is a batch of this protocol (anything else on the port is left alone). */
export function isWireBatch(data: unknown): data is WireBatch {
  return Array.isArray(data) && data[0] === WIRE_TAG
}

/**
 * An example transform module for sluice's stream runner: masks every digit in the assistant's streamed text
 * (account numbers, phone numbers, codes) before it reaches the client, and leaves every other event untouched.
 *
 *   createStreamRunner({ workers: 2, semaphore, transform: new URL('./redact-transform.js', import.meta.url) })
 *
 * (On Node from dist/ the module must be JavaScript; Bun and Deno import this .ts file as is.)
 *
 * The contract (full text in core/upstream/transform.ts):
 * - the default export is a factory, called once per stream with `{ id, request }`; it returns the stream's
 *   transform (or undefined to leave the stream alone) and may keep per-stream state in its closure;
 * - `event({ data, json, event, id })` runs synchronously for every upstream data event (never for `[DONE]`);
 *   `json` is the data already parsed by the forwarder. Return `undefined` to forward the event byte for byte,
 *   `null` to drop it, a string for new data, or any other value (e.g. the mutated `json`) to re-encode it;
 * - throwing ends the stream with an SSE error event (`internal_error`) and releases everything;
 * - it runs in every worker thread (workers > 0) or in-process (workers: 0): module state is per thread.
 *
 * Masking digit by digit is what makes this safe across deltas: a number split over two events is masked in
 * both. A pattern that can span deltas (an e-mail address) needs the previous delta's tail kept per stream.
 * @module
 */
// In an application: `import type { TransformFactory } from 'sluice'`.
import type { TransformFactory } from '../core/upstream/transform.ts'

interface ChatChunk {
  choices?: { delta?: { content?: unknown } }[]
}

const DIGIT = /\d/g

const redactDigits: TransformFactory = () => ({
  event({ json }) {
    let changed = false
    for (const choice of (json as ChatChunk).choices ?? []) {
      const delta = choice.delta
      if (typeof delta?.content !== 'string' || !/\d/.test(delta.content)) continue
      delta.content = delta.content.replace(DIGIT, '•')
      changed = true
    }
    // Unchanged events go out as the upstream sent them: no re-serialisation on the common path.
    return changed ? json : undefined
  },
})

export default redactDigits

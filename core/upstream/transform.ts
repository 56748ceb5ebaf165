/**
 * Stream transforms: user code that sees every upstream SSE data event of a stream before it is forwarded, and
 * may rewrite or drop it — redact, translate a provider's format, count tokens. The stream runner loads a
 * transform MODULE by path or URL (`createStreamRunner({ transform })`): in every worker thread with
 * `workers > 0`, so the CPU work is off the main thread, or in-process with `workers: 0`; same code, same output.
 *
 * ## The transform module contract
 *
 * The module's default export is a {@link TransformFactory}:
 *
 * ```ts
 * // redact.ts
 * import type { TransformFactory } from 'sluice/core/upstream/transform.ts'
 * const redact: TransformFactory = () => ({
 *   event({ json }) {
 *     const delta = (json as { choices?: { delta?: { content?: string } }[] }).choices?.[0]?.delta
 *     if (typeof delta?.content !== 'string' || !/\d{4}/.test(delta.content)) return undefined // forward as is
 *     delta.content = delta.content.replace(/\d/g, '•')
 *     return json // re-encoded as this event's new data
 *   },
 * })
 * export default redact
 * ```
 *
 * - The factory runs once per stream, before the stream's first data event is handled, with the call's `id` and
 *   its (plain-data) request. It returns the stream's transform, or undefined to leave this stream alone. It may
 *   keep per-stream state in a closure. A retry before the first byte starts over with a new one.
 * - `event(event)` is called synchronously, in order, for every upstream data event that is valid JSON — never
 *   for `data: [DONE]`, comments, heartbeats, or malformed data (which ends the stream first). It returns:
 *   - `undefined` (or nothing): forward the event exactly as the upstream sent it (no re-serialisation);
 *   - `null`: drop the event;
 *   - a string: the event's new `data` (multi-line strings become several `data:` lines);
 *   - any other value: `JSON.stringify`-ed as the new `data` (so mutating `event.json` and returning it works).
 *   Its `event:` and `id:` fields are kept. Only the chunks holding a rewritten or dropped event are re-encoded.
 * - `event.json` is the data parsed once by the forwarder (it validates every event anyway): read it instead of
 *   parsing `event.data` again.
 * - Throwing (in the factory or in `event`) ends the stream with an SSE error event (`internal_error`, the
 *   message is not leaked to the client), aborts the upstream and releases the permits, like any failure.
 * - Synchronous by design: it runs inside the forwarder's per-chunk loop, under its backpressure. It must not
 *   block forever: a worker whose event loop stops answering is terminated (`workerStallTimeoutMs`) and its
 *   streams end with an error event.
 * - Module state is per thread (each worker imports the module once): do not rely on it being global. On Node,
 *   workers running from `dist/` need a `.js`/`.mjs` module; `.ts` works on Bun and Deno, and on Node under tsx.
 * - The usage the stream reports (`end` event `usage`) is counted from the upstream's events before any
 *   transform, i.e. what the upstream billed.
 * @module
 */
import type { UpstreamRequest } from './types.ts'

/** What a transform's factory learns about the stream. */
export interface TransformContext {
  /** The call's id (the lifecycle events' `id`). */
  readonly id: string
  /** The upstream request (url, method, headers, body as sent). */
  readonly request: UpstreamRequest
}

/** One upstream data event. */
export interface TransformEvent {
  /** The event's data: its `data:` lines joined by `\n`. */
  readonly data: string
  /** `data` parsed as JSON by the forwarder. Mutate it and return it to rewrite the event. */
  readonly json: unknown
  /** The `event:` field, if any. */
  readonly event: string | undefined
  /** The `id:` field, if any. */
  readonly id: string | undefined
}

/**
 * What `event()` returns: `undefined` forwards the event unchanged, `null` drops it, a string is its new data,
 * anything else is JSON-encoded as its new data (typed `unknown` so that `return json` type-checks).
 */
export type EventRewrite = unknown

/** A stream's transform, made by the factory for each stream. */
export interface StreamTransform {
  event(event: TransformEvent): EventRewrite
}

/** A transform module's default export. */
export type TransformFactory = (context: TransformContext) => StreamTransform | undefined | void

/** What an edited event becomes: new data, or null (dropped). */
export type EventEdit = string | null

/** Normalises a transform's return value; undefined means "no edit". */
export function toEdit(rewrite: EventRewrite): EventEdit | undefined {
  if (rewrite === undefined) return undefined
  if (rewrite === null || typeof rewrite === 'string') return rewrite
  const data = JSON.stringify(rewrite)
  if (data === undefined) throw new TypeError('A transform returned a value with no JSON form')
  return data
}

/** Checks a value read from a transform module and returns it as a factory. */
export function checkTransformFactory(value: unknown, where: string): TransformFactory {
  if (typeof value !== 'function') {
    const got = value === null ? 'null' : typeof value
    throw new TypeError(`Expected the transform module \`${where}\` to export a default function, got ${got}`)
  }
  return value as TransformFactory
}

/**
 * The soak's stream mix: a seeded sequence of stream plans, each a fault for the test upstream (steered through
 * the `model` string, see test/upstream/behaviour.ts), sometimes a client action (abort), and what the client
 * must see because of it. The upstream's content is deterministic (`expectedContent`), so every plan knows the
 * exact text a complete stream carries.
 */
import { type Behaviour, expectedContent } from '../upstream/behaviour.ts'
import type { Rng } from './rng.ts'

export const FAULTS = [
  'normal',
  'huge',
  'abort',
  'abort-stalled',
  'retry-ok',
  'retry-exhaust',
  'upstream-4xx',
  'reset',
  'reset-before-body',
  'stall',
  'stall-short',
  'malformed',
  'no-done',
  'error-event',
  'buffered',
  'burst',
  'worker-crash',
] as const
export type Fault = (typeof FAULTS)[number]

export type Fields = Partial<Record<keyof Behaviour, string | number | boolean>>

/** What the client must get when nothing else (a queue timeout under overload) intervenes. */
export type Expectation =
  /** 200 SSE: every event, exactly `content`, `data: [DONE]`, a clean end; the upstream saw `attempts` requests. */
  | { kind: 'complete'; content: string; attempts: number }
  /** 200 SSE: exactly `content` (never more, never a duplicate), then one error event with `code`, nothing after. */
  | { kind: 'error-event'; code: string; content: string }
  /** An HTTP error before any byte: `status`, a JSON error body with `code`, `retryAfter` header if asked. */
  | { kind: 'http-error'; status: number; code: string; attempts: number; retryAfter: boolean }
  /** The client leaves: what it got until then is a prefix of `content`, without an error event. */
  | { kind: 'client-abort'; content: string }
  /** stream: false: one chat.completion JSON with `content`. */
  | { kind: 'buffered'; content: string; attempts: number }
  /**
   * Its worker dies at the third content delta (test/fixtures/transforms/crash-on-marker.mjs): at most `content`
   * (the first two deltas, fewer if they shared a chunk with the third), then a `worker_crashed` error event — or a
   * 502 if the crash came before the response.
   */
  | { kind: 'worker-crash'; content: string }

export type ClientAction = { afterEvents: number } | { afterMs: number }

export interface StreamPlan {
  /** Unique per soak: the upstream's record id. */
  id: string
  fault: Fault
  fields: Fields
  stream: boolean
  abort?: ClientAction
  expect: Expectation
}

export interface MixSettings {
  /** The gateway's `--idle-timeout`: stalls last longer, short stalls and delays stay well under it. */
  idleTimeoutMs: number
  /** The gateway's `--queue-timeout`: burst streams hold their permit longer than this. */
  queueTimeoutMs: number
  /** The gateway's `--concurrency`: a burst is twice this many streams at once. */
  concurrency: number
  /** The gateway's `--retries`. */
  retries: number
  /** Relative weight of each fault (0 leaves it out). */
  weights?: Partial<Record<Fault, number>>
}

export const DEFAULT_WEIGHTS: Readonly<Record<Fault, number>> = {
  normal: 30,
  huge: 3,
  abort: 10,
  'abort-stalled': 3,
  'retry-ok': 8,
  'retry-exhaust': 4,
  'upstream-4xx': 4,
  reset: 8,
  'reset-before-body': 4,
  stall: 3,
  'stall-short': 3,
  malformed: 5,
  'no-done': 4,
  'error-event': 4,
  buffered: 4,
  burst: 0.4,
  // Needs --workers > 0 and the crash transform: the soak turns it on then.
  'worker-crash': 0,
}

const RETRYABLE = [429, 500, 502, 503, 504] as const
const CLIENT_ERRORS = [400, 401, 403, 404, 409, 422] as const

/** What the gateway answers when the upstream keeps failing with `status` (see UpstreamStatusError). */
export function exhaustedStatus(status: number): number {
  return status === 429 || status === 503 || status === 504 ? status : 502
}

export interface StreamMix {
  /** The next plan, or a whole burst of plans to start at once. */
  next(): StreamPlan[]
}

export function createStreamMix(rng: Rng, settings: MixSettings, idPrefix = 'c'): StreamMix {
  const weights = { ...DEFAULT_WEIGHTS, ...settings.weights }
  let sequence = 0
  const newId = (): string => `${idPrefix}${++sequence}`
  // Gaps between upstream writes stay far under the idle timeout even on a loaded machine.
  const smallDelay =
    (): number => (rng.chance(0.5) ? rng.int(1, Math.max(1, Math.floor(settings.idleTimeoutMs / 100))) : 0)
  const shape = (chunks: number): Fields => ({
    chunks,
    ...(rng.chance(0.3) ? { pad: rng.int(1, 200) } : {}),
    ...(rng.chance(0.3) ? { eventsPerWrite: rng.int(2, 8) } : {}),
    ...(rng.chance(0.2) ? { ttft: rng.int(5, Math.floor(settings.idleTimeoutMs / 10)) } : {}),
  })
  const content = (fields: Fields): string =>
    expectedContent(Number(fields.chunks), Number(fields.pad ?? 0), Number(fields.hugeEvent ?? 0))
  const complete = (fields: Fields, attempts = 1): Expectation => ({
    kind: 'complete',
    content: content(fields),
    attempts,
  })
  const errorEvent = (code: string, fields: Fields, chunks: number): Expectation => ({
    kind: 'error-event',
    code,
    content: expectedContent(chunks, Number(fields.pad ?? 0), Number(fields.hugeEvent ?? 0)),
  })

  function plan(fault: Fault): StreamPlan {
    // The crash transform recognises its streams by this id suffix.
    const id = fault === 'worker-crash' ? `${newId()}-crash` : newId()
    const make = (fields: Fields, expect: Expectation, extra: Partial<StreamPlan> = {}): StreamPlan => ({
      id,
      fault,
      fields: { id, ...fields },
      stream: true,
      expect,
      ...extra,
    })
    switch (fault) {
      case 'normal': {
        const fields = { ...shape(rng.int(1, 40)), delay: smallDelay() }
        return make(fields, complete(fields))
      }
      case 'huge': {
        const fields = { chunks: rng.int(1, 5), hugeEvent: rng.int(16 * 1024, 1024 * 1024) }
        return make(fields, complete(fields))
      }
      case 'abort': {
        const fields = { ...shape(rng.int(10, 60)), delay: rng.int(2, 10) }
        const abort = rng.chance(0.7)
          ? { afterEvents: rng.int(0, Number(fields.chunks) + 1) }
          : { afterMs: rng.int(0, 150) }
        return make(fields, { kind: 'client-abort', content: content(fields) }, { abort })
      }
      case 'abort-stalled': {
        // The upstream goes silent (mid-event sometimes); the client leaves while it is: the gateway must cancel it.
        const chunks = rng.int(2, 20)
        const stallAfter = rng.int(0, chunks - 1)
        const fields = { chunks, stallAfter, midEvent: rng.chance(0.5) }
        return make(fields, { kind: 'client-abort', content: content(fields) }, {
          abort: { afterEvents: stallAfter + 1 },
        })
      }
      case 'retry-ok': {
        const fail = rng.pick(RETRYABLE)
        const fields = {
          ...shape(rng.int(1, 20)),
          fail,
          failTimes: rng.int(1, settings.retries),
          retryAfterMs: rng.int(5, 30),
        }
        return make(fields, complete(fields, Number(fields.failTimes) + 1))
      }
      case 'retry-exhaust': {
        const fail = rng.pick(RETRYABLE)
        const fields = { chunks: 3, fail, retryAfterMs: rng.int(5, 30) }
        return make(fields, {
          kind: 'http-error',
          status: exhaustedStatus(fail),
          code: 'err_upstream_status',
          attempts: settings.retries + 1,
          retryAfter: true,
        })
      }
      case 'upstream-4xx': {
        const fail = rng.pick(CLIENT_ERRORS)
        return make({ chunks: 3, fail }, {
          kind: 'http-error',
          status: fail,
          code: `mock_${fail}`,
          attempts: 1,
          retryAfter: false,
        })
      }
      case 'reset': {
        const fields = { ...shape(rng.int(2, 30)), delay: smallDelay() }
        const cutAfter = rng.int(0, Number(fields.chunks) - 1)
        const all = { ...fields, cutAfter, midEvent: rng.chance(0.5) }
        return make(all, errorEvent('upstream_truncated', all, cutAfter))
      }
      case 'reset-before-body': {
        const fields = { ...shape(rng.int(1, 20)), cutBeforeBody: rng.int(1, settings.retries) }
        return make(fields, complete(fields, Number(fields.cutBeforeBody) + 1))
      }
      case 'stall': {
        const fields = shape(rng.int(2, 20))
        const stallAfter = rng.int(0, Number(fields.chunks) - 1)
        const all = { ...fields, stallAfter, midEvent: rng.chance(0.5) }
        return make(all, errorEvent('idle_timeout', all, stallAfter))
      }
      case 'stall-short': {
        const fields = shape(rng.int(2, 20))
        const all = {
          ...fields,
          stallAfter: rng.int(0, Number(fields.chunks) - 1),
          stallMs: rng.int(20, Math.floor(settings.idleTimeoutMs / 5)),
          midEvent: rng.chance(0.5),
        }
        return make(all, complete(all))
      }
      case 'malformed': {
        const fields = shape(rng.int(2, 30))
        const malformedAfter = rng.int(0, Number(fields.chunks) - 1)
        const all = { ...fields, malformedAfter }
        return make(all, errorEvent('upstream_malformed', all, malformedAfter))
      }
      case 'no-done': {
        const fields = { ...shape(rng.int(1, 30)), noDone: true }
        return make(fields, errorEvent('upstream_truncated', fields, Number(fields.chunks)))
      }
      case 'error-event': {
        const fields = shape(rng.int(2, 30))
        const at = rng.int(0, Number(fields.chunks) - 1)
        const all = { ...fields, errorEvent: at }
        return make(all, errorEvent('mock_error', all, at))
      }
      case 'buffered': {
        const fields = { chunks: rng.int(1, 40), ...(rng.chance(0.3) ? { pad: rng.int(1, 200) } : {}) }
        return make(fields, { kind: 'buffered', content: content(fields), attempts: 1 }, { stream: false })
      }
      case 'worker-crash': {
        const fields = { chunks: rng.int(4, 20), delay: smallDelay() }
        return make(fields, { kind: 'worker-crash', content: expectedContent(2, 0, 0) })
      }
      case 'burst': {
        // Holds its permit for ~1.5 queue timeouts, so the streams queued behind a full gateway time out.
        const chunks = 10
        const fields = { chunks, delay: Math.ceil((settings.queueTimeoutMs * 1.5) / chunks) }
        return make(fields, complete(fields))
      }
    }
  }

  return {
    next() {
      const fault = rng.weighted(weights)
      if (fault !== 'burst') return [plan(fault)]
      return Array.from({ length: settings.concurrency * 2 }, () => plan('burst'))
    },
  }
}

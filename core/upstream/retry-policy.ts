/**
 * When and how long to wait before the next attempt: exponential backoff with full jitter
 * (delay = random × min(maxDelayMs, baseDelayMs × 2^(attempt − 1)), AWS Architecture Blog "Exponential Backoff
 * And Jitter"), unless the upstream said how long with `retry-after-ms` (OpenAI) or `Retry-After` (RFC 9110
 * §10.2.3: delta-seconds or an HTTP-date), which wins, capped at `maxRetryAfterMs`.
 * @module
 */
import { durationMs, invalidOption, positiveInteger } from '../validate.ts'

/** Retry settings of `createUpstreamClient()`. All optional. */
export interface RetryOptions {
  /** Attempts in total, the first included (1 = never retry). Default 3. */
  maxAttempts?: number
  /** Backoff base in ms. Default 250. */
  baseDelayMs?: number
  /** Cap of the exponential backoff in ms. Default 4000. */
  maxDelayMs?: number
  /** Cap of an upstream `Retry-After` in ms. Default 20000. */
  maxRetryAfterMs?: number
  /** Random source in [0, 1) for the jitter; inject a fixed one in tests. Default `Math.random`. */
  random?: () => number
}

export interface RetryPolicy {
  readonly maxAttempts: number
  readonly baseDelayMs: number
  readonly maxDelayMs: number
  readonly maxRetryAfterMs: number
  readonly random: () => number
}

export function resolveRetryPolicy(options: RetryOptions = {}): RetryPolicy {
  if (typeof options !== 'object' || options === null) invalidOption('retry', 'an object', options)
  const random = options.random ?? Math.random
  if (typeof random !== 'function') invalidOption('retry.random', 'a function', random)
  return {
    maxAttempts: positiveInteger('retry.maxAttempts', options.maxAttempts ?? 3),
    baseDelayMs: durationMs('retry.baseDelayMs', options.baseDelayMs ?? 250, { allowZero: true }),
    maxDelayMs: durationMs('retry.maxDelayMs', options.maxDelayMs ?? 4_000, { allowZero: true }),
    maxRetryAfterMs: durationMs('retry.maxRetryAfterMs', options.maxRetryAfterMs ?? 20_000, { allowZero: true }),
    random,
  }
}

/** 429 and the 5xx statuses that mean "try again" (500 included: OpenAI documents retrying it). */
export function isRetryableStatus(status: number): boolean {
  return status === 429 || status === 500 || status === 502 || status === 503 || status === 504
}

/** The wait the upstream asked for, in ms, or undefined. `retry-after-ms` first (it is more precise). */
export function parseRetryAfter(headers: Headers, nowMs: number = Date.now()): number | undefined {
  const precise = headers.get('retry-after-ms')
  if (precise !== null && /^\s*\d+(\.\d+)?\s*$/.test(precise)) return Number(precise)
  const value = headers.get('retry-after')
  if (value === null) return undefined
  if (/^\s*\d+(\.\d+)?\s*$/.test(value)) return Number(value) * 1000
  const date = Date.parse(value)
  return Number.isNaN(date) ? undefined : Math.max(0, date - nowMs)
}

/** How long to sleep after attempt number `failedAttempt` (1-based) failed. */
export function retryDelayMs(policy: RetryPolicy, failedAttempt: number, retryAfterMs: number | undefined): number {
  if (retryAfterMs !== undefined) return Math.min(retryAfterMs, policy.maxRetryAfterMs)
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (failedAttempt - 1))
  return policy.random() * ceiling
}

/**
 * Option validation with one message shape everywhere (after p-queue):
 * ``Expected `capacity` to be a positive integer, got `0` (number)``.
 * Validation happens once, in constructors, never on a hot path.
 * @module
 */

/** Formats a received value for an error message: the value and its type. */
export function describeValue(value: unknown): string {
  let shown: string
  try {
    shown = typeof value === 'string' ? value : typeof value === 'bigint' ? `${value}n` : String(value)
  } catch {
    shown = Object.prototype.toString.call(value)
  }
  return `\`${shown}\` (${value === null ? 'null' : typeof value})`
}

/** Throws a TypeError (wrong type) or RangeError (right type, out of range) naming the option. */
export function invalidOption(name: string, expected: string, value: unknown): never {
  const message = `Expected \`${name}\` to be ${expected}, got ${describeValue(value)}`
  throw typeof value === 'number' ? new RangeError(message) : new TypeError(message)
}

export function positiveInteger(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    invalidOption(name, 'a positive integer', value)
  }
  return value
}

export function nonNegativeInteger(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    invalidOption(name, 'a non-negative integer', value)
  }
  return value
}

/** A finite duration in milliseconds, > 0 (or ≥ 0 with `allowZero`). */
export function durationMs(name: string, value: unknown, { allowZero = false } = {}): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) {
    invalidOption(name, allowZero ? 'a finite number of milliseconds ≥ 0' : 'a finite number of milliseconds > 0', value)
  }
  return value
}

/** Same as `durationMs` but `undefined` passes through (the option is optional). */
export function optionalDurationMs(name: string, value: unknown): number | undefined {
  return value === undefined ? undefined : durationMs(name, value)
}

export function optionalSignal(name: string, value: unknown): AbortSignal | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'object' || value === null || typeof (value as AbortSignal).aborted !== 'boolean') {
    invalidOption(name, 'an AbortSignal', value)
  }
  return value as AbortSignal
}

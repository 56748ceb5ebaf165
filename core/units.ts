/**
 * Parsers for human-written configuration values: durations (`500ms`, `5s`, `1m`), byte sizes (`64kb`, `1mb`) and
 * rates (`60/60s`). Shared by the `sluice` binary and by anyone configuring sluice from env vars on Bun or Deno hosts.
 * Each throws a RangeError naming the setting and the value it got.
 * @module
 */

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }
const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 }

/** `500ms`, `5s`, `1.5s`, `1m`, `2h` → milliseconds. A bare number is milliseconds. */
export function parseDuration(name: string, text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim().toLowerCase())
  const value = match ? Number(match[1]) * DURATION_UNITS[match[2] ?? 'ms']! : NaN
  if (!Number.isFinite(value)) throw new RangeError(`Invalid ${name} \`${text}\`: expected a duration like 500ms, 5s or 1m`)
  return value
}

/** `64kb`, `1mb`, `512b`, `1048576` → bytes (binary multiples: 1kb = 1024 bytes). */
export function parseByteSize(name: string, text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?$/.exec(text.trim().toLowerCase())
  const value = match ? Math.floor(Number(match[1]) * SIZE_UNITS[match[2] ?? 'b']!) : NaN
  if (!Number.isFinite(value) || value < 1) throw new RangeError(`Invalid ${name} \`${text}\`: expected a size like 64kb or 1mb`)
  return value
}

/** `60/60s`, `10/1s`, `100/1m` → `{ rate, per }` (`per` in ms). */
export function parseRate(name: string, text: string): { rate: number; per: number } {
  const [count, window, extra] = text.trim().split('/')
  const rate = Number(count)
  if (extra !== undefined || window === undefined || !/^\d+$/.test(count ?? '') || rate < 1) {
    throw new RangeError(`Invalid ${name} \`${text}\`: expected COUNT/DURATION like 60/60s`)
  }
  const per = parseDuration(name, window)
  if (per <= 0) throw new RangeError(`Invalid ${name} \`${text}\`: the duration must be > 0`)
  return { rate, per }
}

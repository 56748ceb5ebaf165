// The raw piscina baseline of bench/pool.bench.ts: a task that does nothing (plain JS, so no loader is needed).
export default function noop() {
  return 0
}

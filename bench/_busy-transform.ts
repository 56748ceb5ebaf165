// A CPU-heavy transform for bench/pool.bench.ts: about 50 µs of busy work per upstream event (spinning on the
// clock, so the cost is the same on every runtime and does not depend on what the JIT makes of a loop body).
import type { TransformFactory } from '../core/upstream/transform.ts'

const COST_MS = 0.05

const busy: TransformFactory = () => ({
  event() {
    const until = performance.now() + COST_MS
    while (performance.now() < until);
    return undefined
  },
})
export default busy

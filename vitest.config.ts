import { defineConfig } from 'vitest/config'

/** The streaming-call scenarios that the `pool` and `undici` projects run again, through the pool / undici. */
const POOL_SCENARIOS = [
  'test/upstream-stream.test.ts',
  'test/upstream-cancel.test.ts',
  'test/upstream-retry.test.ts',
  'test/upstream-metrics.test.ts',
  'test/upstream-openai.test.ts',
]

export default defineConfig({
  test: {
    // Cross-runtime tests spawn real bun/deno processes and worker threads; on a 2-core machine a cold
    // start of deno plus a stress run takes seconds, so the per-test budget is generous.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Keep the CPU for the scenarios themselves: two forks on two cores.
    pool: 'forks',
    maxWorkers: 2,
    // .ci/run asks for a JSON report too, to print one plain "N passed, N failed" line at the end.
    reporters: process.env.SLUICE_VITEST_JSON ? ['default', 'json'] : ['default'],
    outputFile: process.env.SLUICE_VITEST_JSON ? { json: process.env.SLUICE_VITEST_JSON } : undefined,
    projects: [
      // `include` per project: an inherited root `include` would be concatenated with the pool's.
      { extends: true, test: { name: 'core', include: ['test/**/*.test.ts'] } },
      // The same scenarios with the worker pool as the runner (test/upstream/harness.ts reads the variable).
      { extends: true, test: { name: 'pool', include: POOL_SCENARIOS, env: { SLUICE_TEST_RUNNER: 'pool' } } },
      // And once more in-process on the Node binary's undici-based upstream fetch (adapters/node/upstream-fetch.ts).
      { extends: true, test: { name: 'undici', include: POOL_SCENARIOS, env: { SLUICE_TEST_RUNNER: 'undici' } } },
    ],
  },
})

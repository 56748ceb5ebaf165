import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
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
  },
})

/**
 * The package's public entry points expose what README.md documents, on every runtime's resolution path:
 * the built `dist/` (what Node users import as `sluice`) and the TypeScript sources (what Bun and Deno run).
 */
import { describe, expect, test } from 'vitest'
import { RUNTIMES, runScenario } from './_runtimes.ts'

const CORE_FUNCTIONS = [
  'SharedSemaphore', 'SharedRateLimiter', 'createUpstreamClient', 'createStreamTelemetry', 'createGateway',
  'createGatewayFromConfig', 'createPrometheusMetrics', 'createDemoUpstream', 'parseDuration', 'parseByteSize',
  'parseRate', 'HttpError', 'SluiceError', 'TimeoutError', 'QueueTimeoutError',
]

describe('public API', () => {
  test('the built package (dist/) exports the documented core API and serve() per adapter', async () => {
    const core = await import('../dist/core/mod.js')
    for (const name of CORE_FUNCTIONS) expect(typeof (core as Record<string, unknown>)[name], name).toBe('function')
    for (const runtime of ['node', 'bun', 'deno']) {
      const adapter = (await import(`../dist/adapters/${runtime}/mod.js`)) as { serve?: unknown }
      expect(typeof adapter.serve, runtime).toBe('function')
    }
    const pool = (await import('../dist/core/pool/mod.js')) as Record<string, unknown>
    for (const name of ['createStreamRunner', 'createWorkerPool', 'WorkerCrashedError']) expect(typeof pool[name], name).toBe('function')
  })

  test.each(RUNTIMES)('%s resolves the sources with the same exports', async (runtime) => {
    const { verdict } = await runScenario<{ missing: string[] }>(runtime, 'test/scenarios/public-api.ts', { args: CORE_FUNCTIONS })
    expect(verdict).toEqual({ missing: [] })
  })
})

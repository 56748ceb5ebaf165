import { describe, expect, test } from 'vitest'
import { RUNTIMES, runScenario } from './_runtimes.ts'

describe.each(RUNTIMES)('%s runtime', (runtime) => {
  test('loads the core and its npm dependencies', async () => {
    const { verdict } = await runScenario(runtime, 'test/scenarios/smoke.ts')
    expect(verdict).toEqual({ got: 7, code: 'ERR_TIMEOUT', isSluice: true, sab: 'function', waitAsync: 'function' })
  })
})

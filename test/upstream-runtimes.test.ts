// The streaming call on node, bun and deno: each runtime runs test/scenarios/upstream-core.ts against one test
// upstream in this (Node) process, and the upstream's own records (attempts, close times) judge the result.
import { describe, expect, test } from 'vitest'
import { runScenario, RUNTIMES } from './_runtimes.ts'
import { type CoreVerdict, expectCoreCalls, expectQueueAndIdle, useTestUpstream } from './_stream-core-verdict.ts'
import { expectedContent } from './upstream/behaviour.ts'

const API_KEY = 'sk-runtimes'
const upstream = useTestUpstream(API_KEY)

describe.each(RUNTIMES)('%s', (runtime) => {
  test('streams, cancels a stalled upstream in <50 ms, retries, idle timeout, truncation, permits back', async () => {
    const result = await runScenario<CoreVerdict>(runtime, 'test/scenarios/upstream-core.ts', {
      args: [upstream().url, API_KEY, runtime],
    })
    await expectCoreCalls(upstream(), result, runtime, expectedContent)
    expect(upstream().attempts(`${runtime}-cut`)).toHaveLength(1)
    expectQueueAndIdle(upstream(), result.verdict, runtime, 600)
  })
})

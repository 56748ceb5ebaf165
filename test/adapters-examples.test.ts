/**
 * The runtime examples start on their runtime, stream the SSE demo, and drain an in-flight stream on SIGTERM.
 */
import { describe, expect, test } from 'vitest'
import { startFixture } from './_contract.ts'

const EXAMPLES = [
  { runtime: 'bun', script: 'examples/bun-server.ts' },
  { runtime: 'deno', script: 'examples/deno-server.ts' },
] as const

describe.each(EXAMPLES)('$script', ({ runtime, script }) => {
  test('streams the SSE demo, then drains the stream in flight on SIGTERM and exits 0', async () => {
    const example = await startFixture(runtime, script, {
      env: { PORT: '0' },
      readyPattern: /listening on (\S+)$/,
    })
    try {
      const response = await fetch(`${example.url}/?n=3&intervalMs=10`)
      expect(response.headers.get('content-type')).toBe('text/event-stream')
      expect(await response.text()).toBe(
        ': sluice demo\n\n' + [0, 1, 2].map((i) => `data: {"i":${i},"of":3}\n\n`).join(''),
      )
      const inFlight = await fetch(`${example.url}/?n=5&intervalMs=50`)
      const reading = inFlight.text()
      example.child.kill('SIGTERM')
      expect(await reading).toContain('data: {"i":4,"of":5}\n\n')
      expect(await example.exited).toEqual({ code: 0, signal: null })
    } finally {
      await example.stop('SIGKILL')
    }
  })
})

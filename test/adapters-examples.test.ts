/**
 * The runtime examples run on their runtime: the gateway examples (examples/{bun,deno}-server.ts) stream the
 * embedded demo model and drain a stream in flight on SIGTERM; the binary-on-Bun/Deno examples
 * (examples/{bun,deno}-gateway.ts), started with the benchmark's own argv (bench/e2e/targets.ts), proxy the test
 * upstream with the upstream key, print an access log line, and drain on SIGTERM.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { TARGETS } from '../bench/e2e/targets.ts'
import { startFixture } from './_contract.ts'
import { expectedContent, mockModel } from './upstream/behaviour.ts'
import { contentOf, readSse } from './upstream/harness.ts'
import { startUpstream, type TestUpstream } from './upstream/server.ts'

const messages = [{ role: 'user', content: 'Hello, example!' }]

const SERVER_EXAMPLES = [
  { runtime: 'bun', script: 'examples/bun-server.ts' },
  { runtime: 'deno', script: 'examples/deno-server.ts' },
] as const

describe.each(SERVER_EXAMPLES)('$script', ({ runtime, script }) => {
  test('streams the demo model through the gateway, drains the stream in flight on SIGTERM, exits 0', async () => {
    const example = await startFixture(runtime, script, { env: { PORT: '0' }, readyPattern: /listening on (\S+)$/ })
    try {
      expect((await fetch(`${example.url}/healthz`)).status).toBe(200)
      const response = await fetch(`${example.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'demo', stream: true, messages }),
      })
      expect(response.status).toBe(200)
      expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/)
      // SIGTERM once the stream has begun: the demo model's reply (~2 s) is well within the 10 s drain.
      const reader = response.body!.getReader()
      const first = await reader.read()
      example.child.kill('SIGTERM')
      reader.releaseLock()
      const rest = await readSse(response)
      const text = new TextDecoder().decode(first.value) + rest.text
      expect(rest.error).toBeUndefined()
      expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true)
      expect(text).toContain('"content":" said:')
      expect(await example.exited).toEqual({ code: 0, signal: null })
    } finally {
      await example.stop('SIGKILL')
    }
  })
})

const GATEWAY_EXAMPLES = [
  { runtime: 'bun', target: 'sluice-bun' },
  { runtime: 'deno', target: 'sluice-deno' },
] as const
const UPSTREAM_KEY = 'sk-example-upstream-9a7c'

describe.each(GATEWAY_EXAMPLES)('the $target benchmark target', ({ runtime, target: name }) => {
  let upstream: TestUpstream
  beforeAll(async () => {
    upstream = await startUpstream({ apiKey: UPSTREAM_KEY })
  })
  afterAll(() => upstream?.close())

  test("starts from the bench's argv, proxies with the key, logs each call, drains on SIGTERM", async () => {
    const target = TARGETS.find((t) => t.name === name)!
    const argv = target.command!(upstream.url)
    const script = argv.find((arg) => arg.startsWith('examples/'))!
    const flags = argv.slice(argv.indexOf('--upstream'))
    // An `env NAME=value …` prefix of the target's argv is environment the target needs (Bun's fetch limit).
    const targetEnv = argv[0] === 'env'
      ? Object.fromEntries(argv.slice(1).filter((arg) => /^[A-Z_]+=/.test(arg)).map((arg) => arg.split('=', 2)))
      : {}
    const example = await startFixture(runtime, script, {
      args: flags,
      env: { OPENAI_API_KEY: UPSTREAM_KEY, ...targetEnv },
      readyPattern: /listening on (\S+)$/,
    })
    try {
      // The bench takes the first URL a target prints: it must be the one it listens on.
      expect(example.lines.find((line) => line.includes('http'))).toContain(example.url)
      const request = (id: string, fields: object) =>
        fetch(`${example.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: mockModel({ id, ...fields }), stream: true, messages }),
        })
      const whole = await readSse(await request('example-whole', { chunks: 20 }))
      expect(whole.events.at(-1)?.data).toBe('[DONE]')
      expect(contentOf(whole.events)).toBe(expectedContent(20))
      expect(upstream.attempts('example-whole')[0]?.authorization).toBe(`Bearer ${UPSTREAM_KEY}`)
      const logged = JSON.parse(await example.waitForLine(/^\{.*"outcome":"completed"/)) as Record<string, unknown>
      expect(logged).toMatchObject({ kind: 'stream', status: 200, chunks: 20 + 2 })

      const live = await request('example-live', { chunks: 10, delay: 100 })
      await upstream.waitFor('example-live', (record) => record.chunksWritten >= 1)
      example.child.kill('SIGTERM')
      const drained = await readSse(live)
      expect(drained.events.at(-1)?.data).toBe('[DONE]')
      expect(contentOf(drained.events)).toBe(expectedContent(10))
      expect(await example.exited).toEqual({ code: 0, signal: null })
      expect(example.stderr()).toContain('drained')
      // The bench's configuration is one the runtime can honour: no startup warning.
      expect(example.stderr()).not.toContain('warning')
      expect([...example.lines, example.stderr()].join('\n')).not.toContain(UPSTREAM_KEY)
    } finally {
      await example.stop('SIGKILL')
    }
  })
})

describe('examples/bun-gateway.ts', () => {
  const start = (concurrency: string, env: Record<string, string>) =>
    startFixture('bun', 'examples/bun-gateway.ts', {
      args: ['--upstream', 'http://127.0.0.1:9/v1', '--port', '0', '--concurrency', concurrency],
      env,
      readyPattern: /listening on (\S+)$/,
    })

  test("warns when --concurrency exceeds what Bun's fetch runs at once, and not once the limit is raised", async () => {
    const limited = await start('1000', {})
    try {
      await expect.poll(() => limited.stderr()).toContain('BUN_CONFIG_MAX_HTTP_REQUESTS=1000')
    } finally {
      await limited.stop('SIGKILL')
    }
    const raised = await start('1000', { BUN_CONFIG_MAX_HTTP_REQUESTS: '1000' })
    try {
      expect((await fetch(`${raised.url}/healthz`)).status).toBe(200)
      expect(raised.stderr()).not.toContain('warning')
    } finally {
      await raised.stop('SIGKILL')
    }
  })
})

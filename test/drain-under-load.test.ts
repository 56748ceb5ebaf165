/**
 * Graceful drain under load: SIGTERM to the real `sluice` binary while 500 streams are live — short ones that
 * finish within --drain-timeout, long ones and stalled ones that cannot. Those that finish arrive intact with
 * [DONE]; the rest end with the gateway's `server_shutdown` error event at the deadline (never a clean truncated
 * end); from the signal on no new connection is accepted and a kept-alive one gets no request through; the
 * process exits 0; and the upstream sees every connection closed — completed for the short streams, aborted for
 * the others.
 */
import { randomBytes } from 'node:crypto'
import { Agent, fetch as undiciFetch } from 'undici'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { type NewConnectionOutcome, newConnectionOutcome } from './_contract.ts'
import { type Binary, startBinary } from './chaos/binary.ts'
import { classify, streamedContent } from './chaos/classify.ts'
import { runClient } from './chaos/client.ts'
import { eventually, gatewayState, unexpectedStderr } from './chaos/leaks.ts'
import type { Fields, StreamPlan } from './chaos/stream-mix.ts'
import { expectedContent, mockModel } from './upstream/behaviour.ts'
import { startUpstream, type TestUpstream } from './upstream/server.ts'

const UPSTREAM_KEY = `sk-drain-${randomBytes(12).toString('hex')}`
const DRAIN_MS = 8_000
const SHORT = 250
const LONG = 150
const STALLED = 100

let upstream: TestUpstream
let binary: Binary

beforeAll(async () => {
  upstream = await startUpstream({ apiKey: UPSTREAM_KEY })
  binary = await startBinary({
    upstreamKey: UPSTREAM_KEY,
    args: [
      '--upstream',
      upstream.url,
      '--concurrency',
      '1000',
      '--queue-timeout',
      '20s',
      '--idle-timeout',
      '60s',
      '--drain-timeout',
      `${DRAIN_MS}ms`,
    ],
  })
})

afterAll(async () => {
  await binary?.stop('SIGKILL')
  await upstream?.close()
})

function plan(id: string, fields: Fields): StreamPlan {
  const content = expectedContent(Number(fields.chunks))
  return {
    id,
    fault: 'normal',
    fields: { id, ...fields },
    stream: true,
    expect: { kind: 'complete', content, attempts: 1 },
  }
}

test(
  'SIGTERM with 500 live streams: short ones finish intact, the rest get an error event at the deadline, ' +
    'nothing new gets in, exit 0, every upstream connection closed',
  async () => {
    // Long: 100 s. Stalled: silent after 1 event. Short: 40 events 100 ms apart (~4 s, well inside the 8 s drain),
    // started last so that they are still streaming when the signal comes, however slowly 500 streams start.
    const lasting = [
      ...Array.from({ length: LONG }, (_, index) => plan(`long-${index}`, { chunks: 1_000, delay: 100 })),
      ...Array.from({ length: STALLED }, (_, index) => plan(`stalled-${index}`, { chunks: 10, stallAfter: 1 })),
    ]
    const short = Array.from({ length: SHORT }, (_, index) => plan(`short-${index}`, { chunks: 40, delay: 100 }))
    const plans = [...lasting, ...short]
    // A client with a kept-alive idle connection to the gateway, to try after the signal.
    const keepAlive = new Agent({ connections: 1, keepAliveTimeout: 60_000 })
    const warm = await undiciFetch(`${binary.url}/healthz`, { dispatcher: keepAlive })
    expect(warm.status).toBe(200)
    await warm.text()

    // Every stream is live: the upstream has written its first event for each one.
    const live = (group: StreamPlan[]): Promise<boolean> =>
      eventually(() => group.every(({ id }) => upstream.attempts(id)[0]?.firstByteAt !== undefined), 30_000, 50)
    const run = (group: StreamPlan[]) =>
      group.map((each) => runClient(each, { baseUrl: binary.url, watchdogMs: 60_000 }))
    const clients = run(lasting)
    expect(await live(lasting)).toBe(true)
    clients.push(...run(short))
    expect(await live(short)).toBe(true)
    // ~500: on a loaded 2-core machine the first short streams may already be done when the last one starts.
    const before = await gatewayState(binary.url)
    expect(before.active).toBeGreaterThanOrEqual(400)
    const requestsBeforeSignal = upstream.requests.length

    binary.child.kill('SIGTERM')
    await binary.waitForStderr(/draining/)

    // From the signal until the exit: every new connection is refused; the kept-alive one gets nothing through.
    const probes: NewConnectionOutcome[] = []
    const probing = (async () => {
      while (binary.alive()) {
        probes.push(await newConnectionOutcome(binary.url, 2_000).catch(() => 'answered' as const))
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    })()
    const late = await undiciFetch(`${binary.url}/v1/chat/completions`, {
      dispatcher: keepAlive,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: mockModel({ id: 'late', chunks: 1 }),
        stream: true,
        messages: [{ role: 'user', content: 'x' }],
      }),
    }).then(
      async (response) => ({ status: response.status, text: await response.text() }),
      (error: Error) => ({ status: 0, text: error.message }),
    )
    expect(late.status === 0 || (late.status === 503 && late.text.includes('server_draining')), JSON.stringify(late))
      .toBe(true)

    const exit = await binary.exited
    await probing
    await keepAlive.close()
    expect(exit).toEqual({ code: 0, signal: null })
    expect(probes.length).toBeGreaterThan(1)
    // The binary prints "draining" just before it closes its listener, so the first probe may still land in the
    // listen backlog in between: it is then closed unanswered (seen once in ~10 runs), never served.
    expect(probes[0]).not.toBe('answered')
    const notRefused = probes.flatMap((
      outcome,
      index,
    ) => (index > 0 && outcome !== 'refused' ? [{ index, outcome }] : []))
    expect(notRefused).toEqual([])
    expect(unexpectedStderr(binary.stderr())).toEqual([])

    const seen = await Promise.all(clients)
    const outcomes = new Map<string, number>()
    plans.forEach((each, index) => {
      const observation = seen[index]!
      const outcome = classify(observation)
      const kind = each.id.split('-')[0]!
      outcomes.set(`${kind} ${outcome}`, (outcomes.get(`${kind} ${outcome}`) ?? 0) + 1)
      const content = streamedContent(observation.events)
      if (kind === 'short') {
        expect({ id: each.id, outcome }).toEqual({ id: each.id, outcome: 'complete' })
        expect(content).toBe(expectedContent(40))
      } else {
        expect({ id: each.id, outcome }).toEqual({ id: each.id, outcome: 'error-event:server_shutdown' })
        expect(expectedContent(1_000).startsWith(content)).toBe(true)
      }
    })
    console.log(
      `drain under load: ${before.active} active at SIGTERM, ` +
        `${probes.filter((outcome) => outcome === 'refused').length} of ${probes.length} new connections refused, ` +
        [...outcomes].map(([outcome, count]) => `${outcome} ${count}`).join(', '),
    )

    // The upstream saw every connection closed, and nothing new after the signal.
    expect(await eventually(() => upstream.inFlight() === 0, 10_000)).toBe(true)
    for (const { id } of plans) {
      const records = upstream.attempts(id)
      expect(records).toHaveLength(1)
      expect({ id, outcome: records[0]!.outcome }).toEqual({
        id,
        outcome: id.startsWith('short') ? 'completed' : 'aborted',
      })
    }
    expect(upstream.requests.length).toBe(requestsBeforeSignal)
    expect(upstream.attempts('late')).toEqual([])
    expect(await eventually(() => upstream.openConnections() === 0, 10_000)).toBe(true)
  },
  120_000,
)

// The streaming call's core behaviours through the worker pool (createStreamRunner({ workers: 2 })), run by node,
// bun and deno against a test upstream started by vitest (in Node). Usage:
//   <runtime> pool-core.ts <upstream base url incl. /v1> <api key> <id prefix>
// Reports what the clients saw plus sharedNow() abort times; the test compares them with the upstream's records.
// It closes its runners and then simply ends: the test checks that the process exits on its own (nothing leaks).
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import { sharedNow } from '../../core/clock.ts'
import { createStreamRunner } from '../../core/pool/stream-runner.ts'
import { createWorkerPool } from '../../core/pool/worker-pool.ts'
import { SharedSemaphore } from '../../core/semaphore.ts'
import type { StreamEvent } from '../../core/telemetry/events.ts'
import { createStreamTelemetry } from '../../core/telemetry/stream-telemetry.ts'
import { runMain } from './_verdict.ts'

const [url, apiKey, prefix] = process.argv.slice(2) as [string, string, string]
const CAPACITY = 8

function request(model: string): { url: string; headers: Record<string, string>; body: string } {
  return {
    url: `${url}/chat/completions`,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
    body: JSON.stringify({ model: `mock?${model}`, stream: true, messages: [{ role: 'user', content: 'hi' }] }),
  }
}

async function readAll(response: Response): Promise<{ events: EventSourceMessage[]; text: string }> {
  const events: EventSourceMessage[] = []
  const parser = createParser({ onEvent: (event) => events.push(event) })
  const decoder = new TextDecoder()
  let text = ''
  for await (const chunk of response.body!) {
    const part = decoder.decode(chunk, { stream: true })
    text += part
    parser.feed(part)
  }
  return { events, text }
}

const content = (events: EventSourceMessage[]): string =>
  events
    .filter((event) => event.data !== '[DONE]' && !event.data.startsWith('{"error"'))
    .map((event) =>
      (JSON.parse(event.data) as { choices: { delta: { content?: string } }[] }).choices[0]?.delta.content ?? ''
    )
    .join('')
const errorCode = (events: EventSourceMessage[]): string | undefined =>
  (JSON.parse(events.at(-1)?.data ?? '{}') as { error?: { code: string } }).error?.code

await runMain(async () => {
  const semaphore = new SharedSemaphore({ capacity: CAPACITY })
  const telemetry = createStreamTelemetry()
  const log: StreamEvent[] = []
  telemetry.events.on('event', (event) => log.push(event))
  const runner = createStreamRunner({
    workers: 2,
    semaphore,
    streamWeight: 2,
    telemetry,
    idleTimeoutMs: 150,
    queueTimeoutMs: 2_000,
    retry: { baseDelayMs: 5, maxDelayMs: 20 },
    transform: new URL('../../examples/redact-transform.ts', import.meta.url),
  })
  await runner.ready

  const happy = await readAll(await runner.stream(request(`id=${prefix}-happy&chunks=30&eventsPerWrite=3`)))

  // Cancel while the upstream is stalled: three rounds, the test takes the fastest (shared, loaded CPUs).
  const cancelled: { id: string; abortedAt: number; rejected: boolean }[] = []
  for (let round = 0; round < 3; round++) {
    const id = `${prefix}-cancel-${round}`
    const controller = new AbortController()
    const response = await runner.stream(request(`id=${id}&chunks=5&stallAfter=1`), { signal: controller.signal })
    const reader = response.body!.getReader()
    const seen: EventSourceMessage[] = []
    const parser = createParser({ onEvent: (event) => seen.push(event) })
    const decoder = new TextDecoder()
    while (seen.length < 2) parser.feed(decoder.decode((await reader.read()).value, { stream: true }))
    const abortedAt = sharedNow()
    controller.abort(new Error('client left'))
    const rejected = await reader.read().then(() => false, () => true)
    cancelled.push({ id, abortedAt, rejected })
  }

  const retryId = `${prefix}-retry`
  const retryRequest = request(`id=${retryId}&chunks=3&fail=503&failTimes=2`)
  const retried = await readAll(await runner.stream(retryRequest, { id: retryId }))
  const idle = await readAll(await runner.stream(request(`id=${prefix}-idle&chunks=5&stallAfter=2`)))
  const noDone = await readAll(await runner.stream(request(`id=${prefix}-nodone&chunks=3&noDone=1`)))
  // 20 ms between writes: see upstream-core.ts (Bun 1.4.5 fetch and a FIN read with the last bytes).
  const cutMid = await readAll(await runner.stream(request(`id=${prefix}-cut&chunks=6&cutAfter=3&midEvent=1&delay=20`)))

  // A worker killed mid-stream: its stream ends with an error event, its permits come back, it is replaced.
  const crashPool = createWorkerPool({ workers: 1, semaphore, telemetry, idleTimeoutMs: 5_000 })
  await crashPool.ready
  const doomed = await crashPool.stream(request(`id=${prefix}-crash&chunks=5&stallAfter=1&stallMs=3000`))
  const doomedReader = doomed.body!.getReader()
  const first = new TextDecoder().decode((await doomedReader.read()).value)
  doomedReader.releaseLock()
  const heldDuringCrash = CAPACITY - semaphore.available
  await crashPool.threads[0]!.terminate()
  const crashed = await readAll(doomed)
  const afterCrash = await readAll(await crashPool.stream(request(`id=${prefix}-after-crash&chunks=2`)))
  await crashPool.close()

  const holder = await semaphore.acquire(CAPACITY)
  const quick = createStreamRunner({ workers: 1, semaphore, telemetry, queueTimeoutMs: 100 })
  await quick.ready
  const queueStarted = performance.now()
  const queueError = await quick.stream(request(`id=${prefix}-queued`)).then(
    () => undefined,
    (error: unknown) => error as { code: string; status: number },
  )
  const queueElapsed = performance.now() - queueStarted
  holder.release()

  const active = runner.active + quick.active + crashPool.active
  await Promise.all([runner.close(), quick.close()])

  return {
    happy: { content: content(happy.events), last: happy.events.at(-1)?.data, events: happy.events.length },
    cancelled,
    retry: {
      content: content(retried.events),
      retries: log.filter((e) => e.type === 'retry' && e.id === retryId).length,
    },
    idle: { content: content(idle.events), code: errorCode(idle.events) },
    noDone: { content: content(noDone.events), code: errorCode(noDone.events) },
    cutMid: {
      content: content(cutMid.events),
      code: errorCode(cutMid.events),
      wholeEvents: cutMid.text.split('\n\n').filter(Boolean).length === cutMid.events.length,
    },
    crash: {
      first: first.startsWith('data: '),
      heldDuringCrash,
      code: errorCode(crashed.events),
      done: crashed.text.includes('[DONE]'),
      afterCrash: content(afterCrash.events),
    },
    queue: { code: queueError?.code, status: queueError?.status, elapsed: Math.round(queueElapsed) },
    otherRetries: log.flatMap((e) => (e.type === 'retry' && e.id !== retryId ? [`${e.id}: ${e.reason}`] : [])),
    idleState: {
      available: semaphore.available,
      capacity: semaphore.capacity,
      active,
      telemetryActive: telemetry.active,
      disconnects: log.filter((e) => e.type === 'disconnect').length,
      ends: log.filter((e) => e.type === 'end').length,
      starts: log.filter((e) => e.type === 'start').length,
    },
  }
})

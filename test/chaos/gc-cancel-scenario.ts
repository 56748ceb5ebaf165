/**
 * Cancellation after a garbage collection: the chaos soak saw stalled streams hang forever (no idle-timeout
 * event, upstream never closed) only under load, i.e. after GCs. On Node 20 the AbortSignal given to fetch()
 * reaches the in-flight body only through undici's Request, which follows it by WeakRef: with `redirect: 'error'`
 * nothing else keeps that Request alive once the headers are in, a GC collects it, and aborting the signal no
 * longer ends the body read. This scenario forces the GCs (run it with `node --expose-gc`): streams whose
 * upstream stalls after one event, a full GC, then (a) the idle timeout must end each one with an error event,
 * (b) a client that leaves must get its upstream connection closed.
 *
 * Usage: node --expose-gc --import tsx test/chaos/gc-cancel-scenario.ts → one VERDICT line (test/_runtimes.ts).
 */
import { SharedSemaphore } from '../../core/semaphore.ts'
import { createUpstreamClient } from '../../core/upstream/client.ts'
import { runMain } from '../scenarios/_verdict.ts'
import { mockModel } from '../upstream/behaviour.ts'
import { startUpstream } from '../upstream/server.ts'

const STREAMS = 20
const IDLE_MS = 300
/** Far past the idle timeout: a stream still open then is hung. */
const GIVE_UP_MS = 5_000

const gc = (globalThis as { gc?: () => void }).gc
if (!gc) throw new Error('run with node --expose-gc')

async function collect(): Promise<void> {
  for (let round = 0; round < 3; round++) {
    gc!()
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

function within<T>(promise: Promise<T>, ms: number, fallback: T): Promise<T> {
  return Promise.race([promise, new Promise<T>((resolve) => setTimeout(() => resolve(fallback), ms))])
}

await runMain(async () => {
  const apiKey = 'sk-gc-scenario'
  const upstream = await startUpstream({ apiKey })
  const client = createUpstreamClient({
    semaphore: new SharedSemaphore({ capacity: STREAMS * 2 }),
    idleTimeoutMs: IDLE_MS,
  })
  const request = (id: string) => ({
    url: `${upstream.url}/chat/completions`,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
    body: JSON.stringify({ model: mockModel({ id, chunks: 5, stallAfter: 1 }), stream: true, messages: [] }),
  })
  try {
    // (a) The idle timeout after a GC.
    const idle = await Promise.all(Array.from({ length: STREAMS }, async (_, index) => {
      const response = await client.stream(request(`idle-${index}`))
      const reader = response.body!.getReader()
      await reader.read()
      await collect()
      const rest = (async () => {
        let text = ''
        for (;;) {
          const { done, value } = await reader.read()
          if (done) return text.includes('"code":"idle_timeout"') ? 'idle_timeout' : 'ended-without-error'
          text += new TextDecoder().decode(value)
        }
      })()
      return within(rest, GIVE_UP_MS, 'hung')
    }))
    // (b) The client leaving after a GC.
    const left = await Promise.all(Array.from({ length: STREAMS }, async (_, index) => {
      const id = `leave-${index}`
      const controller = new AbortController()
      const response = await client.stream(request(id), { signal: controller.signal })
      const reader = response.body!.getReader()
      await reader.read()
      await collect()
      controller.abort(new Error('client left'))
      reader.cancel().catch(() => {})
      const closed = upstream.waitForClosed(id, GIVE_UP_MS).then(() => 'upstream-closed', () => 'upstream-open')
      return closed
    }))
    const tally = (outcomes: string[]): Record<string, number> =>
      outcomes.reduce<Record<string, number>>(
        (counts, outcome) => ({ ...counts, [outcome]: (counts[outcome] ?? 0) + 1 }),
        {},
      )
    return { idle: tally(idle), left: tally(left), streams: STREAMS }
  } finally {
    await upstream.close()
  }
})
// Hung fetches would keep the process alive: the verdict is out, leave.
process.exit(0)

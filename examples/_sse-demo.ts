/**
 * The demo handler both examples serve: `GET /?n=5&intervalMs=100` streams n Server-Sent Events, produced only
 * when the runtime pulls (so a slow client slows the producer) and stopped by the body's cancel() when the client
 * leaves. Runtime-free, like the core it stands in for (the gateway will replace it).
 */
import { sleep } from '../core/abort.ts'

const encoder = new TextEncoder()

export function sseDemo(request: Request): Response {
  const query = new URL(request.url).searchParams
  const n = Number(query.get('n') ?? 5)
  const intervalMs = Number(query.get('intervalMs') ?? 100)
  const stop = new AbortController()
  let i = 0
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      // An SSE comment first: it reaches the client at once, which also completes the response head on Bun 1.4
      // (Bun sends the end of the head only with the first chunk, oven-sh/bun#33660).
      controller.enqueue(encoder.encode(': sluice demo\n\n'))
    },
    async pull(controller) {
      await sleep(intervalMs, stop.signal)
      controller.enqueue(encoder.encode(`data: ${JSON.stringify({ i, of: n })}\n\n`))
      if (++i >= n) controller.close()
    },
    cancel(reason) {
      stop.abort(reason)
    },
  })
  return new Response(body, { headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' } })
}

// The Deno upstream fetch (adapters/deno/upstream-fetch.ts) on Deno, against servers the test runs in Node.
// Usage: deno run -A deno-upstream-fetch.ts <test upstream base url incl. /v1> <raw server origin> <dead origin>
//   [<https origin>] (its certificate's PEM in SLUICE_TEST_CA)
// Reports what each call saw (and sharedNow() cancel times); test/deno-upstream-fetch.test.ts judges it.
import { createUpstreamFetch } from '../../adapters/deno/upstream-fetch.ts'
import { sharedNow } from '../../core/clock.ts'
import { runMain } from './_verdict.ts'

const [upstreamUrl, rawOrigin, deadOrigin, httpsOrigin] = process.argv.slice(2) as [string, string, string, string?]

const chat = (model: string, init: RequestInit = {}): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ model: `mock?${model}`, stream: true, messages: [{ role: 'user', content: 'hi' }] }),
  redirect: 'error',
  ...init,
})
const completions = `${upstreamUrl}/chat/completions`

async function outcome(call: () => Promise<unknown>): Promise<unknown> {
  try {
    return { value: await call() }
  } catch (error) {
    const { name, message } = error as Error
    return { error: { name, message } }
  }
}

await runMain(async () => {
  const upstreamFetch = createUpstreamFetch({ keepAliveTimeoutMs: 2_000 })
  const raw = (path: string, init: RequestInit = {}) =>
    upstreamFetch(`${rawOrigin}${path}`, { redirect: 'error', ...init })

  // A stream, then the same again: the second goes over the kept-alive connection.
  const first = await upstreamFetch(completions, chat('id=df-stream&chunks=30'))
  const stream = { status: first.status, type: first.headers.get('content-type'), text: await first.text() }
  const again = await (await upstreamFetch(completions, chat('id=df-again&chunks=3'))).text()

  // Cancelling the body mid-stream: the upstream (stalled) must see its connection close.
  const stalled = await upstreamFetch(completions, chat('id=df-cancel&chunks=10&stallAfter=1'))
  const reader = stalled.body!.getReader()
  await reader.read()
  const cancelledAt = sharedNow()
  await reader.cancel()

  // The signal aborting mid-body: the pending read rejects with its reason, the upstream sees the close.
  const controller = new AbortController()
  const abortable = chat('id=df-abort&chunks=10&stallAfter=1', { signal: controller.signal })
  const aborting = await upstreamFetch(completions, abortable)
  const abortReader = aborting.body!.getReader()
  await abortReader.read()
  const pending = abortReader.read()
  const abortedAt = sharedNow()
  controller.abort(new Error('client left'))
  const midBody = await outcome(() => pending)

  // Aborted while waiting for the headers: fetch rejects with the reason, at once.
  const early = new AbortController()
  const headersStarted = sharedNow()
  setTimeout(() => early.abort(new DOMException('stop', 'AbortError')), 50)
  const slowHeaders = chat('id=df-early&headerDelay=2000', { signal: early.signal })
  const beforeHeaders = await outcome(() => upstreamFetch(completions, slowHeaders))
  const beforeHeadersMs = sharedNow() - headersStarted

  // The upstream cutting the stream mid-body: the read fails, as with fetch.
  const cutResponse = await upstreamFetch(completions, chat('id=df-cut&chunks=10&cutAfter=2'))
  const cut = await outcome(() => cutResponse.text())

  const lengths = []
  for (let round = 0; round < 3; round++) lengths.push(await (await raw('/length')).text())
  const head = await raw('/length', { method: 'HEAD' })
  const noContent = await raw('/no-content')
  const cookies = await raw('/cookies')
  const result = {
    stream,
    again,
    cancelledAt,
    abortedAt,
    midBody,
    beforeHeaders,
    beforeHeadersMs,
    cut,
    lengths,
    head: { status: head.status, body: head.body === null, length: head.headers.get('content-length') },
    noContent: { status: noContent.status, body: noContent.body === null },
    closeDelimited: await (await raw('/close-delimited')).text(),
    earlyHints: await (await raw('/early-hints')).text(),
    gzip: await (await raw('/gzip')).text(),
    cookies: cookies.headers.getSetCookie(),
    cookiesBody: await cookies.text(),
    redirect: await outcome(() => raw('/redirect')),
    // redirect 'follow' is the global fetch's job: it follows.
    followed: await (await upstreamFetch(`${rawOrigin}/redirect`)).text(),
    // The raw server closes this connection 30 ms after the response, without saying so: the next request, sent
    // on it from the pool, still succeeds (on a new connection).
    stale: await (async () => {
      const before = await (await raw('/drop-after')).text()
      await new Promise((resolve) => setTimeout(resolve, 150))
      return [before, await (await raw('/length')).text()]
    })(),
    refused: await outcome(() => upstreamFetch(`${deadOrigin}/x`, { redirect: 'error' })),
  }
  await upstreamFetch.close()
  if (httpsOrigin !== undefined) {
    // Over TLS, twice: the second on the kept-alive connection.
    const tlsFetch = createUpstreamFetch({ caCerts: [process.env.SLUICE_TEST_CA ?? ''] })
    const tls = []
    for (let round = 0; round < 2; round++) {
      tls.push(await (await tlsFetch(`${httpsOrigin}/sse`, { redirect: 'error' })).text())
    }
    await tlsFetch.close()
    return { ...result, tls }
  }
  return result
})

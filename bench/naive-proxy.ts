/**
 * The baseline: the pass-through proxy a user would write in ten minutes with Node 20 and global fetch.
 * It is honest, not deliberately bad: it forwards the body, aborts the upstream fetch when the client leaves
 * (`res 'close'`, the event that works for POSTs), and streams with `pipeline(Readable.fromWeb(body), res)`,
 * which honours 'drain'. What it lacks is what sluice adds (limits, timeouts, retries, metrics), and
 * `fromWeb` is its per-chunk cost (see shared/research/runtimes.md §5).
 *
 *   node --import tsx bench/naive-proxy.ts --upstream http://127.0.0.1:PORT/v1 [--port 0]  → LISTENING <url>
 * @module
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { ReadableStream as NodeReadableStream } from 'node:stream/web'
import { parseArgs } from 'node:util'
import { assertLoopbackUrl } from './e2e/loopback.ts'

const { values } = parseArgs({ options: { upstream: { type: 'string' }, port: { type: 'string', default: '0' } } })
if (!values.upstream) throw new Error('usage: naive-proxy --upstream http://127.0.0.1:PORT/v1 [--port N]')
const upstream = assertLoopbackUrl(values.upstream)

const server = createServer(async (req, res) => {
  const controller = new AbortController()
  res.on('close', () => controller.abort())
  try {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    const reply = await fetch(new URL(req.url ?? '/', upstream), {
      method: req.method,
      headers: { 'content-type': 'application/json', ...auth(req.headers.authorization) },
      body: req.method === 'GET' || req.method === 'HEAD' ? undefined : Buffer.concat(chunks),
      signal: controller.signal,
    })
    res.writeHead(reply.status, { 'content-type': reply.headers.get('content-type') ?? 'application/octet-stream' })
    if (reply.body) await pipeline(Readable.fromWeb(reply.body as NodeReadableStream), res)
    else res.end()
  } catch {
    // Before headers: say so. Mid-stream (or client gone): cut the connection so the client sees a truncation.
    if (!res.headersSent) res.writeHead(502).end()
    else res.destroy()
  }
})

const auth = (value: string | undefined): Record<string, string> => (value ? { authorization: value } : {})

server.listen(Number(values.port), '127.0.0.1', () => {
  console.log(`LISTENING http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`)
})
// Die with the process that spawned us, even if it could not send a signal.
process.stdin.on('end', () => process.exit(0)).resume()

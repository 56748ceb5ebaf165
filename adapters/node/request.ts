/**
 * Node `IncomingMessage` → web `Request`.
 * @module
 */
import type { IncomingMessage } from 'node:http'

/** Request bodies are buffered up to this many bytes before `req` is paused (backpressure towards the client). */
const BODY_HIGH_WATER_MARK = 64 * 1024

/**
 * Builds the `Request` the handler sees. `signal` is the adapter's disconnect signal. `fallbackOrigin` is used
 * when the client sent no `Host` (HTTP/1.0). Throws a TypeError when the URL or a header is not valid for the
 * Fetch API (the adapter answers 400).
 */
export function toRequest(req: IncomingMessage, signal: AbortSignal, fallbackOrigin: string): Request {
  const headers = new Headers()
  const raw = req.rawHeaders
  for (let i = 0; i < raw.length; i += 2) headers.append(raw[i]!, raw[i + 1]!)
  const target = req.url ?? '/'
  // Origin-form (`/path`) is the norm; absolute-form (`http://host/path`) is what proxies are sent.
  const origin = req.headers.host ? `http://${req.headers.host}` : fallbackOrigin
  const url = target.startsWith('/') ? origin + target : target
  const method = req.method ?? 'GET'
  if (method === 'GET' || method === 'HEAD') return new Request(url, { method, headers, signal })
  // `duplex: 'half'` is required by undici for a stream body (fetch spec); it is missing from the DOM typings.
  const init = { method, headers, signal, body: bodyStream(req), duplex: 'half' }
  return new Request(url, init as RequestInit)
}

/**
 * The request body as a pull-based byte stream: `req` is paused whenever the stream's queue is full and resumed
 * on `pull()`, so a handler that reads slowly slows the client down instead of buffering the upload.
 * `Readable.toWeb()` would do the same at more cost per chunk, and Deno's version ignored backpressure
 * (denoland/deno#36275).
 */
function bodyStream(req: IncomingMessage): ReadableStream<Uint8Array> {
  let settled = false
  const onData = (chunk: Buffer, controller: ReadableStreamDefaultController<Uint8Array>): void => {
    controller.enqueue(chunk)
    if ((controller.desiredSize ?? 0) <= 0) req.pause()
  }
  return new ReadableStream<Uint8Array>(
    {
      start(controller) {
        req.on('data', (chunk: Buffer) => onData(chunk, controller))
        req.once('end', () => {
          if (settled) return
          settled = true
          controller.close()
        })
        const fail = (error: unknown): void => {
          if (settled) return
          settled = true
          controller.error(error)
        }
        req.once('error', fail)
        // Since Node 16 `req 'close'` also fires after a complete body (nodejs/node#38924): only an early one,
        // before 'end', means the upload was cut. The DOMException is built only then: it captures a stack
        // (~17 µs), and building it on every close was 1.1% of the binary's CPU at c100 (--cpu-prof).
        req.once('close', () => {
          if (!settled) fail(new DOMException('The client disconnected during the request body', 'AbortError'))
        })
      },
      pull() {
        req.resume()
      },
      cancel() {
        // The handler does not want the rest: discard it (Node dumps unread bodies itself once the response
        // ends; destroying `req` would take the socket and the response with it).
        settled = true
        req.removeAllListeners('data')
        req.resume()
      },
    },
    { highWaterMark: BODY_HIGH_WATER_MARK, size: (chunk) => chunk.byteLength },
  )
}

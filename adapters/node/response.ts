/**
 * Web `Response` → Node `ServerResponse`, with a hand read/write pump. `Readable.fromWeb(body).pipe(res)` is
 * about 4× slower per chunk on Node 20 and unfair across concurrent streams (shared/research/runtimes.md §5,
 * fastify/fastify#6444); Node's web-stream fast paths (nodejs/node#61807) are not in Node 20.
 * @module
 */
import type { ServerResponse } from 'node:http'

/**
 * Writes `response` to `res`. `gone` is the request's disconnect signal (aborted when `res` closes before it
 * finished): once it aborts, the body is cancelled and nothing more is written. An error from the body after the
 * headers went out is reported to `onError` and destroys the socket, so the client sees a truncated response
 * instead of a clean end. Never rejects.
 */
export async function sendResponse(
  response: Response,
  res: ServerResponse,
  method: string,
  gone: AbortSignal,
  onError: (error: unknown) => void,
): Promise<void> {
  const body = response.body
  if (gone.aborted) {
    // The client left while the handler was working: nobody will read this body.
    void body?.cancel(gone.reason).catch(noop)
    return
  }
  try {
    writeHead(response, res)
  } catch (error) {
    // An invalid status or header value from the handler (rejected by Node, not by the Headers class).
    onError(error)
    void body?.cancel(error).catch(noop)
    res.destroy()
    return
  }
  // A 204/304 Response has a null body by construction (Fetch "null body status"); HEAD must not send one.
  if (body === null || method === 'HEAD') {
    void body?.cancel().catch(noop)
    res.end()
    return
  }
  await pump(body, res, gone, onError)
}

function writeHead(response: Response, res: ServerResponse): void {
  // A flat [name, value, name, value, …] list keeps repeated headers apart; set-cookie must never be joined.
  const head: string[] = []
  response.headers.forEach((value, name) => {
    if (name !== 'set-cookie') head.push(name, value)
  })
  for (const cookie of response.headers.getSetCookie()) head.push('set-cookie', cookie)
  if (response.statusText) res.writeHead(response.status, response.statusText, head)
  else res.writeHead(response.status, head)
}

/*
 * The pump. Per chunk: one `reader.read()` and one `res.write()`; a promise is made only when `write()` returns
 * false (the socket buffer is full), and then the loop waits for 'drain' — ignoring that return value buffered
 * 1 GiB in 2.3 s with a stalled reader (runtimes.md §2, the bug vercel/ai#9475 fixed). A client leaving aborts
 * `gone`, which cancels the reader: a pending read() resolves done and the source's cancel() runs at once.
 */
async function pump(
  body: ReadableStream<Uint8Array>,
  res: ServerResponse,
  gone: AbortSignal,
  onError: (error: unknown) => void,
): Promise<void> {
  const reader = body.getReader()
  const cancel = (): void => void reader.cancel(gone.reason).catch(noop)
  gone.addEventListener('abort', cancel, { once: true })
  // Headers go out before the first body chunk, so a client learns the status while the upstream thinks, but
  // not in a write of their own when that chunk is already there: a first chunk ready within this turn of the
  // event loop carries them (one write instead of two). The separate header write was 1.7% of the binary's CPU
  // at c100 (flushHeaders → writeUtf8String in --cpu-prof, a syscall plus loopback delivery per response).
  let headSent = false
  const flushHead = (): void => {
    headSent = true
    if (!res.destroyed) res.flushHeaders()
  }
  const flush = setImmediate(flushHead)
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done || gone.aborted) break
      clearImmediate(flush)
      headSent = true
      if (!res.write(value)) await drained(res, gone)
    }
    clearImmediate(flush)
    if (!gone.aborted) res.end()
  } catch (error) {
    clearImmediate(flush)
    if (gone.aborted) return
    onError(error)
    // The status line goes out first, so the client sees a cut 200 rather than a connection closed unanswered.
    if (!headSent) flushHead()
    cut(res)
  } finally {
    gone.removeEventListener('abort', cancel)
  }
}

/**
 * Ends the connection without ending the response: the chunked body gets no terminating chunk, which is how the
 * client tells a cut from a clean end. What was written before goes out first (`destroySoon`: end, then destroy
 * once flushed), unless the client is not reading, when it could never arrive anyway.
 */
function cut(res: ServerResponse): void {
  const socket = res.socket
  // Without an error argument: the socket's error would be re-reported as a 'clientError'.
  if (socket === null || res.writableNeedDrain) res.destroy()
  else socket.destroySoon()
}

/** Resolves on 'drain', or when the client is gone (then 'drain' never comes). */
function drained(res: ServerResponse, gone: AbortSignal): Promise<void> {
  if (gone.aborted) return Promise.resolve()
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done)
      gone.removeEventListener('abort', done)
      resolve()
    }
    res.on('drain', done)
    gone.addEventListener('abort', done, { once: true })
  })
}

function noop(): void {}

/**
 * Hostile HTTP/1.1 clients on raw node:net sockets, for what fetch() refuses to send (CR/LF in header values,
 * duplicate Content-Length, CL+TE smuggling shapes) or cannot do (drip bytes slowly, open and hold thousands of
 * idle connections). Each exchange waits for the SERVER to close the connection (or a timeout), so a test sees
 * whether the server ended it and what it answered.
 */
import { connect, type Socket } from 'node:net'

export interface RawReply {
  /** Everything the server sent, as latin1 text. */
  text: string
  /** The status code of the first response, if any. */
  status: number | undefined
  /** True when the server closed the connection; false when our timeout gave up and closed it. */
  closedByServer: boolean
  elapsedMs: number
}

function address(baseUrl: string): { host: string; port: number } {
  const url = new URL(baseUrl)
  return { host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port) }
}

export function openSocket(baseUrl: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(address(baseUrl))
    socket.once('connect', () => {
      socket.off('error', reject)
      resolve(socket)
    })
    socket.once('error', reject)
  })
}

/**
 * Sends `pieces` (the first at once, each next one `everyMs` later) and collects the answer until the server
 * closes the connection or `timeoutMs` passes. Dripping stops as soon as the server has closed.
 */
export async function exchange(
  baseUrl: string,
  pieces: ReadonlyArray<string | Uint8Array> | string,
  { everyMs = 0, timeoutMs = 5_000 } = {},
): Promise<RawReply> {
  const started = performance.now()
  const socket = await openSocket(baseUrl)
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => chunks.push(chunk))
  socket.on('error', () => {}) // a reset is an answer too: the socket closes, closedByServer stays true
  let ourClose = false
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  const timer = setTimeout(() => {
    ourClose = true
    socket.destroy()
  }, timeoutMs)
  const list = typeof pieces === 'string' ? [pieces] : pieces
  void (async () => {
    for (const [index, piece] of list.entries()) {
      if (socket.destroyed) return
      if (index > 0 && everyMs > 0) {
        await Promise.race([new Promise((resolve) => setTimeout(resolve, everyMs)), closed])
        if (socket.destroyed) return
      }
      socket.write(piece)
    }
  })()
  await closed
  clearTimeout(timer)
  const text = Buffer.concat(chunks).toString('latin1')
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1]
  return {
    text,
    status: status === undefined ? undefined : Number(status),
    closedByServer: !ourClose,
    elapsedMs: performance.now() - started,
  }
}

/** The HTTP/1.1 request head for `lines` (each `Name: value`), CRLF-terminated, blank line included. */
export function head(requestLine: string, lines: readonly string[]): string {
  return `${[requestLine, ...lines].join('\r\n')}\r\n\r\n`
}

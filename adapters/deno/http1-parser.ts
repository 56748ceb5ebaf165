/**
 * The HTTP/1.1 response side of ./upstream-fetch.ts, runtime-free so it is unit-tested on Node: the response
 * head (RFC 9112 §4–5) and the body framing (§6: chunked, Content-Length, or until the connection closes).
 * Strict where a lenient reading could desynchronise a kept-alive connection (chunk sizes, lengths); anything it
 * rejects throws an Http1ParseError, and the connection is then never reused.
 * @module
 */

const LF = 0x0a
const CR = 0x0d

/** Longest response head accepted (status line + headers), as Node's default `--max-http-header-size` (16 KiB). */
export const MAX_HEAD_BYTES = 16 * 1024
/** Longest chunk-size line accepted (size + extensions). */
const MAX_CHUNK_LINE_BYTES = 4 * 1024

export class Http1ParseError extends Error {
  override readonly name = 'Http1ParseError'
}

export interface ResponseHead {
  /** 1 for HTTP/1.1, 0 for HTTP/1.0. */
  minorVersion: number
  status: number
  statusText: string
  /** Header fields in order, names lowercase. */
  headers: [string, string][]
  /** Bytes of the head, the blank line included. */
  length: number
}

const decoder = new TextDecoder('latin1')

/** Parses a response head at the start of `bytes`; undefined while its blank line has not arrived. */
export function parseResponseHead(bytes: Uint8Array): ResponseHead | undefined {
  const end = headEnd(bytes)
  if (end === -1) {
    if (bytes.length >= MAX_HEAD_BYTES) throw new Http1ParseError(`response head over ${MAX_HEAD_BYTES} bytes`)
    return undefined
  }
  const lines = decoder.decode(bytes.subarray(0, end)).split(/\r?\n/)
  const statusLine = /^HTTP\/1\.([01]) (\d{3})(?: (.*))?$/.exec(lines[0] ?? '')
  if (statusLine === null) throw new Http1ParseError(`malformed status line ${JSON.stringify(lines[0]?.slice(0, 80))}`)
  const headers: [string, string][] = []
  for (let index = 1; index < lines.length; index++) {
    const line = lines[index]!
    if (line === '') continue
    const colon = line.indexOf(':')
    // A continuation line (obs-fold) or a field without a name: rejected, as RFC 9112 §5.2 allows.
    if (colon <= 0 || line[0] === ' ' || line[0] === '\t') throw new Http1ParseError('malformed header line')
    const name = line.slice(0, colon)
    if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(name)) throw new Http1ParseError('malformed header name')
    headers.push([name.toLowerCase(), line.slice(colon + 1).trim()])
  }
  return {
    minorVersion: Number(statusLine[1]),
    status: Number(statusLine[2]),
    statusText: statusLine[3] ?? '',
    headers,
    length: end,
  }
}

/** Offset just after the blank line that ends the head (CRLF CRLF, or bare LFs), or -1. */
function headEnd(bytes: Uint8Array): number {
  let from = 0
  for (;;) {
    const lf = bytes.indexOf(LF, from)
    if (lf === -1) return -1
    const next = bytes[lf + 1]
    if (next === LF) return lf + 2
    if (next === CR && bytes[lf + 2] === LF) return lf + 3
    from = lf + 1
  }
}

/** The values of header `name` (lowercase), in order. */
export function headerValues(head: ResponseHead, name: string): string[] {
  const values: string[] = []
  for (const [field, value] of head.headers) if (field === name) values.push(value)
  return values
}

/**
 * Reads one response body out of the bytes a connection delivers. `push` returns the body bytes found in `input`
 * (views into it: copy them before reusing its buffer); once `done`, `extra` says how many bytes of the last input
 * were past the body's end (a server must not send any: the connection is then not reused).
 */
export interface BodyDecoder {
  push(input: Uint8Array): Uint8Array[]
  readonly done: boolean
  readonly extra: number
  /** The connection ended: true when that is a complete body (close-delimited), false when it was cut. */
  end(): boolean
}

/** The body framing of RFC 9112 §6.3 for a response to `method` with `head`. */
export function bodyDecoder(method: string, head: ResponseHead): BodyDecoder {
  const { status } = head
  if (method === 'HEAD' || status === 204 || status === 304 || (status >= 100 && status < 200)) return new FixedBody(0)
  const codings = headerValues(head, 'transfer-encoding').join(',').split(',').map((c) => c.trim().toLowerCase())
  const codingsPresent = codings.some((coding) => coding !== '')
  if (codingsPresent) {
    // Only plain chunked: another coding would have to be decoded, which fetch does and this does not.
    if (codings.length !== 1 || codings[0] !== 'chunked') {
      throw new Http1ParseError(`unsupported transfer-encoding ${JSON.stringify(codings.join(', '))}`)
    }
    return new ChunkedBody()
  }
  const lengths = headerValues(head, 'content-length').join(',').split(',').map((l) => l.trim())
  if (lengths.length > 0 && lengths[0] !== '') {
    const length = lengths[0]!
    if (!/^\d{1,15}$/.test(length) || lengths.some((other) => other !== length)) {
      throw new Http1ParseError(`invalid content-length ${JSON.stringify(lengths.join(', '))}`)
    }
    return new FixedBody(Number(length))
  }
  return new CloseDelimitedBody()
}

class FixedBody implements BodyDecoder {
  #remaining: number
  extra = 0

  constructor(length: number) {
    this.#remaining = length
  }

  get done(): boolean {
    return this.#remaining === 0
  }

  push(input: Uint8Array): Uint8Array[] {
    const take = Math.min(this.#remaining, input.length)
    this.#remaining -= take
    this.extra = input.length - take
    return take === 0 ? [] : [input.subarray(0, take)]
  }

  end(): boolean {
    return this.#remaining === 0
  }
}

class CloseDelimitedBody implements BodyDecoder {
  readonly done = false
  readonly extra = 0

  push(input: Uint8Array): Uint8Array[] {
    return input.length === 0 ? [] : [input]
  }

  end(): boolean {
    return true
  }
}

type ChunkState = 'size' | 'data' | 'data-end' | 'trailers' | 'done'

/** Transfer-Encoding: chunked. Trailer fields are read and dropped. */
class ChunkedBody implements BodyDecoder {
  #state: ChunkState = 'size'
  /** The current line so far (size line or trailer line), across inputs. */
  #line = ''
  #remaining = 0
  extra = 0

  get done(): boolean {
    return this.#state === 'done'
  }

  push(input: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = []
    let at = 0
    while (at < input.length && this.#state !== 'done') {
      if (this.#state === 'data') {
        const take = Math.min(this.#remaining, input.length - at)
        out.push(input.subarray(at, at + take))
        at += take
        this.#remaining -= take
        if (this.#remaining === 0) this.#state = 'data-end'
        continue
      }
      const lf = input.indexOf(LF, at)
      const stop = lf === -1 ? input.length : lf
      this.#line += decoder.decode(input.subarray(at, stop))
      if (this.#line.length > MAX_CHUNK_LINE_BYTES) throw new Http1ParseError('chunk line too long')
      if (lf === -1) break
      at = lf + 1
      const line = this.#line.endsWith('\r') ? this.#line.slice(0, -1) : this.#line
      this.#line = ''
      this.#lineEnded(line)
    }
    this.extra = this.#state === 'done' ? input.length - at : 0
    return out
  }

  #lineEnded(line: string): void {
    switch (this.#state) {
      case 'size': {
        const size = /^([0-9A-Fa-f]{1,12})[ \t]*(?:;.*)?$/.exec(line)
        if (size === null) throw new Http1ParseError(`invalid chunk size line ${JSON.stringify(line.slice(0, 40))}`)
        this.#remaining = Number.parseInt(size[1]!, 16)
        this.#state = this.#remaining === 0 ? 'trailers' : 'data'
        return
      }
      case 'data-end':
        if (line !== '') throw new Http1ParseError('chunk data longer than its size')
        this.#state = 'size'
        return
      case 'trailers':
        if (line === '') this.#state = 'done'
        return
      default:
        return
    }
  }

  end(): boolean {
    return this.#state === 'done'
  }
}

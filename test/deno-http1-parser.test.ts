// The HTTP/1.1 response parser of the Deno upstream fetch (adapters/deno/http1-parser.ts), on Node: heads, and
// each body framing fed whole, byte by byte and in random splits, since a socket read can end anywhere.
import { describe, expect, test } from 'vitest'
import {
  bodyDecoder,
  Http1ParseError,
  MAX_HEAD_BYTES,
  parseResponseHead,
  type ResponseHead,
} from '../adapters/deno/http1-parser.ts'

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)
const text = (parts: Uint8Array[]): string => Buffer.concat(parts).toString('latin1')

function head(raw: string): ResponseHead {
  const parsed = parseResponseHead(bytes(raw))
  if (parsed === undefined) throw new Error('incomplete head')
  return parsed
}

/** Feeds `wire` to a decoder in pieces cut at `cuts`; the body text, whether it is done, and the extra bytes. */
function decode(responseHead: string, wire: string, cuts: number[] = [], method = 'GET') {
  const decoder = bodyDecoder(method, head(responseHead))
  const input = bytes(wire)
  const out: Uint8Array[] = []
  let start = 0
  let extra = 0
  for (const end of [...cuts, input.length]) {
    // Copies, as the fetch does before its buffer is reused: views must not be read after the next push.
    for (const part of decoder.push(input.subarray(start, end))) out.push(part.slice())
    extra += decoder.done ? decoder.extra : 0
    start = end
    if (decoder.done) break
  }
  return { body: text(out), done: decoder.done, extra, end: decoder.end() }
}

const CHUNKED = 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n'

describe('parseResponseHead', () => {
  test('status, reason, headers in order with lowercase names, head length', () => {
    const raw = 'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\n\r\nbody'
    expect(parseResponseHead(bytes(raw))).toEqual({
      minorVersion: 1,
      status: 200,
      statusText: 'OK',
      headers: [['content-type', 'text/event-stream'], ['set-cookie', 'a=1'], ['set-cookie', 'b=2']],
      length: raw.length - 4,
    })
  })

  test('undefined until the blank line; bare LF line ends; HTTP/1.0; no reason phrase', () => {
    expect(parseResponseHead(bytes('HTTP/1.1 200 OK\r\nx: 1\r\n'))).toBeUndefined()
    expect(head('HTTP/1.0 204\nx:  spaced  \n\n')).toMatchObject({ minorVersion: 0, status: 204, statusText: '' })
    expect(head('HTTP/1.0 204\nx:  spaced  \n\n').headers).toEqual([['x', 'spaced']])
  })

  test('rejects a bad status line, folded or nameless fields, and a head over the limit', () => {
    for (const raw of ['HTTP/2 200 OK\r\n\r\n', 'HTTP/1.1 20 OK\r\n\r\n', 'ICY 200 OK\r\n\r\n']) {
      expect(() => parseResponseHead(bytes(raw))).toThrow(Http1ParseError)
    }
    expect(() => parseResponseHead(bytes('HTTP/1.1 200 OK\r\na: 1\r\n  folded\r\n\r\n'))).toThrow(Http1ParseError)
    expect(() => parseResponseHead(bytes('HTTP/1.1 200 OK\r\n: x\r\n\r\n'))).toThrow(Http1ParseError)
    expect(() => parseResponseHead(bytes('HTTP/1.1 200 OK\r\nbad name: x\r\n\r\n'))).toThrow(Http1ParseError)
    expect(() => parseResponseHead(bytes(`HTTP/1.1 200 OK\r\nx: ${'a'.repeat(MAX_HEAD_BYTES)}`))).toThrow(
      Http1ParseError,
    )
  })
})

describe('bodyDecoder', () => {
  const wire = '5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\ntrailer: x\r\n\r\n'

  test('chunked: whole, byte by byte and at every single cut, the same body, done, nothing extra', () => {
    expect(decode(CHUNKED, wire)).toEqual({ body: 'hello, world', done: true, extra: 0, end: true })
    const everyByte = Array.from({ length: wire.length - 1 }, (_, index) => index + 1)
    expect(decode(CHUNKED, wire, everyByte)).toEqual({ body: 'hello, world', done: true, extra: 0, end: true })
    for (let cut = 1; cut < wire.length; cut++) {
      expect(decode(CHUNKED, wire, [cut]).body).toBe('hello, world')
    }
  })

  test('chunked: bytes past the last chunk are extra; a cut stream is not complete', () => {
    expect(decode(CHUNKED, `${wire}HTTP/1.1`)).toMatchObject({ done: true, extra: 8 })
    expect(decode(CHUNKED, '5\r\nhel')).toEqual({ body: 'hel', done: false, extra: 0, end: false })
  })

  test('chunked: malformed sizes and data longer than its size throw', () => {
    for (const bad of ['x\r\n', '-1\r\n', '5\r\nhello!\r\n', '1234567890abc\r\n', `1;${'e'.repeat(5000)}`]) {
      expect(() => decode(CHUNKED, bad), bad.slice(0, 20)).toThrow(Http1ParseError)
    }
  })

  test('content-length: exact length, extra bytes after it, repeated equal values; conflicting ones throw', () => {
    const fixed = 'HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n'
    expect(decode(fixed, 'hello', [2])).toEqual({ body: 'hello', done: true, extra: 0, end: true })
    expect(decode(fixed, 'hello!!')).toMatchObject({ body: 'hello', done: true, extra: 2 })
    expect(decode('HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\n\r\n', 'ok').body).toBe('ok')
    expect(() => decode('HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n', '')).toThrow(
      Http1ParseError,
    )
    expect(() => decode('HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n', '')).toThrow(Http1ParseError)
  })

  test('no framing: the body runs until the connection closes, which completes it', () => {
    const closed = decode('HTTP/1.1 200 OK\r\n\r\n', 'all of it')
    expect(closed).toEqual({ body: 'all of it', done: false, extra: 0, end: true })
  })

  test('no body for HEAD, 204 and 304, whatever the headers say', () => {
    const withLength = (status: string) => `HTTP/1.1 ${status}\r\ncontent-length: 10\r\n\r\n`
    expect(decode(withLength('200 OK'), '', [], 'HEAD')).toMatchObject({ body: '', done: true, extra: 0 })
    expect(decode(withLength('204 No Content'), '')).toMatchObject({ body: '', done: true })
    expect(decode(withLength('304 Not Modified'), '')).toMatchObject({ body: '', done: true })
  })

  test('transfer codings other than plain chunked throw (nothing here decodes them)', () => {
    expect(() => decode('HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n', '')).toThrow(Http1ParseError)
    expect(() => decode('HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n', '')).toThrow(Http1ParseError)
  })
})

/**
 * Reads a request body up to a byte limit, enforcing the limit WHILE reading: a client announcing or sending more
 * than `limitBytes` is refused as soon as the limit is crossed, without buffering the rest (the stream is
 * cancelled). Decodes as strict UTF-8 (invalid bytes → 400, never U+FFFD-replaced into the upstream request).
 * @module
 */
import { concatBytes } from '../bytes.ts'
import { HttpError } from './http-error.ts'

export async function readBodyText(request: Request, limitBytes: number): Promise<string> {
  const declared = request.headers.get('content-length')
  if (declared !== null && /^\d+$/.test(declared) && Number(declared) > limitBytes) {
    await request.body?.cancel().catch(() => {})
    throw tooLarge(limitBytes)
  }
  if (!request.body) return ''
  const reader = request.body.getReader()
  const parts: Uint8Array[] = []
  let received = 0
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      received += value.byteLength
      if (received > limitBytes) {
        await reader.cancel().catch(() => {})
        throw tooLarge(limitBytes)
      }
      parts.push(value)
    }
  } finally {
    reader.releaseLock()
  }
  const bytes = parts.length === 1 ? parts[0]! : concatBytes(parts, received)
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes)
  } catch {
    throw new HttpError(400, 'invalid_encoding', 'Request body is not valid UTF-8')
  }
}

function tooLarge(limitBytes: number): HttpError {
  return new HttpError(413, 'body_too_large', `Request body exceeds the limit of ${limitBytes} bytes`)
}

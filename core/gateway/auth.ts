/**
 * Gateway keys: clients must send `Authorization: Bearer <key>` with one of the configured keys.
 * The comparison is constant-time with respect to the key contents: both sides are reduced to SHA-256 digests
 * (equal length whatever the input), and every configured key is compared with an XOR accumulator that never
 * exits early. There is no `crypto.timingSafeEqual` in the Web platform, hence the hand loop.
 * @module
 */
import { HttpError } from './http-error.ts'

export interface GatewayKeyCheck {
  /** Resolves when `request` carries a valid gateway key; rejects with a 401 HttpError otherwise. */
  verify(request: Request): Promise<void>
}

export function createGatewayKeyCheck(keys: readonly string[]): GatewayKeyCheck {
  const digests = Promise.all(keys.map(sha256))
  return {
    async verify(request) {
      const header = request.headers.get('authorization') ?? ''
      const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header)
      const presented = await sha256(match?.[1] ?? '')
      let anyMatch = 0
      for (const digest of await digests) anyMatch |= equalDigests(digest, presented)
      if (!match || anyMatch === 0) {
        throw new HttpError(401, 'invalid_api_key', 'Missing or invalid gateway key (expected Authorization: Bearer <key>)', {
          type: 'authentication_error',
          headers: { 'www-authenticate': 'Bearer' },
        })
      }
    },
  }
}

async function sha256(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)))
}

/** 1 when equal, 0 otherwise; always touches every byte. */
function equalDigests(a: Uint8Array, b: Uint8Array): number {
  let difference = 0
  for (let i = 0; i < a.length; i++) difference |= a[i]! ^ b[i]!
  return difference === 0 ? 1 : 0
}

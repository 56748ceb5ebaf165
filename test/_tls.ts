/**
 * A throwaway certificate for https test servers on 127.0.0.1, made by openssl (undefined where there is none, so
 * the tests that need it skip): a CA and a leaf it signs, because rustls (Deno's TLS) rejects a self-signed CA
 * certificate used as the server's own (CaUsedAsEndEntity). `ca` is the PEM a client trusts.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface TestCertificate {
  /** The CA's certificate (PEM): what the client must trust. */
  ca: string
  /** The server's certificate and key, for `tls.createServer`-style options. */
  cert: Buffer
  key: Buffer
}

export function makeTestCertificate(): TestCertificate | undefined {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-tls-'))
  const at = (name: string): string => join(dir, name)
  const openssl = (...args: string[]): boolean => spawnSync('openssl', args).status === 0
  try {
    writeFileSync(at('leaf.ext'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n')
    const made = openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=sluice-test-ca',
      '-keyout', at('ca.key'), '-out', at('ca.pem')) &&
      openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', at('leaf.key'),
        '-out', at('leaf.csr')) &&
      openssl('x509', '-req', '-in', at('leaf.csr'), '-CA', at('ca.pem'), '-CAkey', at('ca.key'), '-CAcreateserial',
        '-days', '1', '-extfile', at('leaf.ext'), '-out', at('leaf.pem'))
    if (!made) return undefined
    const ca = readFileSync(at('ca.pem'), 'utf8')
    return { ca, cert: readFileSync(at('leaf.pem')), key: readFileSync(at('leaf.key')) }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

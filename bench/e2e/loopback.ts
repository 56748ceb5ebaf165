/**
 * The benchmarks open up to thousands of connections as fast as the machine allows: pointed at a real host that
 * is a denial-of-service, so every entry point refuses anything but the loopback interface.
 * @module
 */
import { isIP } from 'node:net'

export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname
  if (host === 'localhost') return true
  if (isIP(host) === 4) return host.startsWith('127.')
  if (isIP(host) === 6) return host === '::1' || host === '0:0:0:0:0:0:0:1'
  return false
}

/** Returns the parsed URL, or throws if it is not http(s) on a loopback address. */
export function assertLoopbackUrl(url: string): URL {
  const parsed = new URL(url)
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new Error(`refusing ${url}: only http(s) targets are supported`)
  }
  if (!isLoopbackHost(parsed.hostname)) {
    throw new Error(`refusing ${url}: the load generator only targets loopback (127.0.0.0/8, ::1, localhost)`)
  }
  return parsed
}

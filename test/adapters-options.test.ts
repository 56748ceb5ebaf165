/**
 * The runtime-free parts of the server contract (option validation, addresses, the close deadline) and the
 * adapters' own option checks, which run before any runtime global is touched, so Node can check all three.
 */
import { afterEach, describe, expect, test, vi } from 'vitest'
import { serve as serveBun } from '../adapters/bun/mod.ts'
import { serve as serveDeno } from '../adapters/deno/mod.ts'
import { serve as serveNode } from '../adapters/node/mod.ts'
import { CloseDeadline, resolveCloseDelay, resolveServeOptions, serverAddress } from '../core/server.ts'

const handler = (): Response => new Response('unused')

describe('resolveServeOptions', () => {
  test('defaults: port 3000 on loopback, console.error for errors', () => {
    const options = resolveServeOptions()
    expect(options).toMatchObject({ port: 3000, hostname: '127.0.0.1' })
    expect(typeof options.onError).toBe('function')
  })

  test.each([
    [{ port: -1 }, RangeError, 'Expected `port` to be an integer from 0 to 65535, got `-1` (number)'],
    [{ port: 1.5 }, RangeError, 'Expected `port` to be an integer from 0 to 65535, got `1.5` (number)'],
    [{ port: '80' }, TypeError, 'Expected `port` to be an integer from 0 to 65535, got `80` (string)'],
    [{ hostname: '' }, TypeError, 'Expected `hostname` to be a non-empty string, got `` (string)'],
    [{ onError: 'log' }, TypeError, 'Expected `onError` to be a function, got `log` (string)'],
  ])('%j is rejected', (options, type, message) => {
    expect(() => resolveServeOptions(options as never)).toThrow(type)
    expect(() => resolveServeOptions(options as never)).toThrow(message)
  })
})

describe('resolveCloseDelay', () => {
  test('no deadline by default, 0 when forced, timeoutMs otherwise', () => {
    expect(resolveCloseDelay()).toBeUndefined()
    expect(resolveCloseDelay({ force: true, timeoutMs: 5_000 })).toBe(0)
    expect(resolveCloseDelay({ timeoutMs: 250 })).toBe(250)
  })

  test('bad values name the option', () => {
    expect(() => resolveCloseDelay({ timeoutMs: -1 })).toThrow(
      'Expected `timeoutMs` to be a finite number of milliseconds ≥ 0, got `-1` (number)',
    )
    expect(() => resolveCloseDelay({ force: 'yes' as never })).toThrow(
      'Expected `force` to be a boolean, got `yes` (string)',
    )
  })
})

describe('serverAddress', () => {
  test.each([
    ['127.0.0.1', 'http://127.0.0.1:8080'],
    ['0.0.0.0', 'http://127.0.0.1:8080'],
    ['::', 'http://[::1]:8080'],
    ['::1', 'http://[::1]:8080'],
    ['localhost', 'http://localhost:8080'],
  ])('%s gives %s', (hostname, url) => {
    expect(serverAddress(hostname, 8080)).toEqual({ hostname, port: 8080, url })
  })
})

describe('CloseDeadline', () => {
  afterEach(() => {
    vi.useRealTimers()
  })

  test('the earliest deadline wins and fires once', () => {
    vi.useFakeTimers()
    const forceClose = vi.fn()
    const deadline = new CloseDeadline(forceClose)
    deadline.request(undefined)
    deadline.request(1_000)
    deadline.request(5_000) // later: ignored
    vi.advanceTimersByTime(999)
    expect(forceClose).not.toHaveBeenCalled()
    deadline.request(100) // earlier: replaces
    vi.advanceTimersByTime(100)
    expect(forceClose).toHaveBeenCalledTimes(1)
    deadline.request(0)
    vi.advanceTimersByTime(10_000)
    expect(forceClose).toHaveBeenCalledTimes(1)
  })

  test('0 forces at once; settle() cancels a pending deadline', () => {
    vi.useFakeTimers()
    const forced = vi.fn()
    new CloseDeadline(forced).request(0)
    expect(forced).toHaveBeenCalledTimes(1)
    const settled = vi.fn()
    const deadline = new CloseDeadline(settled)
    deadline.request(50)
    deadline.settle()
    vi.advanceTimersByTime(1_000)
    deadline.request(0)
    expect(settled).not.toHaveBeenCalled()
  })
})

describe('adapter options', () => {
  test('node: headersTimeout must not exceed requestTimeout', () => {
    expect(() => serveNode(handler, { headersTimeout: 40_000, requestTimeout: 30_000 })).toThrow(
      'Expected `headersTimeout` (40000) to be > 0 and ≤ `requestTimeout` (30000)',
    )
    expect(() => serveNode(handler, { keepAliveTimeout: -5 })).toThrow(
      'Expected `keepAliveTimeout` to be a finite number of milliseconds ≥ 0, got `-5` (number)',
    )
  })

  test('bun: idleTimeout is Bun’s range of seconds; the adapter refuses to run elsewhere', () => {
    expect(() => serveBun(handler, { idleTimeout: 300 })).toThrow(
      'Expected `idleTimeout` to be an integer number of seconds from 0 to 255, got `300` (number)',
    )
    expect(() => serveBun(handler, { port: 0 })).toThrow('sluice/bun runs on Bun only')
  })

  test('deno: the adapter refuses to run elsewhere; options are checked first', () => {
    expect(() => serveDeno(handler, { port: 0 })).toThrow('sluice/deno runs on Deno only')
    expect(() => serveDeno(handler, { port: 1e6 })).toThrow('Expected `port`')
  })

  test('every adapter wants a handler function', () => {
    for (const serve of [serveNode, serveBun, serveDeno]) {
      expect(() => serve('nope' as never)).toThrow('Expected `handler` to be a function')
    }
  })
})

import { describe, expect, test } from 'vitest'
import { CliUsageError, helpText, parseCli } from '../adapters/node/cli-options.ts'
import { parseByteSize, parseDuration, parseRate } from '../core/units.ts'

function config(argv: string[], env: Record<string, string> = {}) {
  const command = parseCli(argv, env)
  if (command.kind !== 'serve') throw new Error(`expected serve, got ${command.kind}`)
  return command.config
}

function usageError(argv: string[], env: Record<string, string> = {}): string {
  try {
    parseCli(argv, env)
  } catch (error) {
    expect(error).toBeInstanceOf(CliUsageError)
    const message = (error as Error).message
    expect(message).not.toContain('\n')
    return message
  }
  throw new Error('expected a CliUsageError')
}

describe('units', () => {
  test.each([['500ms', 500], ['5s', 5000], ['1m', 60_000], ['1.5s', 1500], ['250', 250], ['2h', 7_200_000]])('duration %s', (text, ms) => {
    expect(parseDuration('d', text)).toBe(ms)
  })
  test.each([['64kb', 65_536], ['1mb', 1_048_576], ['512b', 512], ['100', 100]])('size %s', (text, bytes) => {
    expect(parseByteSize('s', text)).toBe(bytes)
  })
  test('rate', () => {
    expect(parseRate('rate', '60/60s')).toEqual({ rate: 60, per: 60_000 })
    expect(parseRate('rate', '10/500ms')).toEqual({ rate: 10, per: 500 })
  })
  test.each(['', '5 seconds', '-1s', '1d', 'ms'])('bad duration %j', (text) => {
    expect(() => parseDuration('idle', text)).toThrow(RangeError)
  })
  test.each(['0/1s', '60', '60/', 'x/1s', '1/1s/2', '1/0s'])('bad rate %j', (text) => {
    expect(() => parseRate('rate', text)).toThrow(/rate/)
  })
})

describe('sluice flags', () => {
  test('defaults: demo upstream, loopback, in-process', () => {
    expect(config([])).toEqual({
      upstream: undefined, upstreamKeyEnv: 'OPENAI_API_KEY', upstreamKey: undefined, host: '127.0.0.1', port: 8787,
      concurrency: 64, streamWeight: 1, bufferedWeight: 1, rate: undefined, queueTimeoutMs: 5000, idleTimeoutMs: 30_000,
      retries: 2, workers: 0, bodyLimitBytes: 1_048_576, gatewayKeys: [], drainTimeoutMs: 30_000, transform: undefined,
      upstreamClient: 'undici', upstreamHttp2: false,
    })
  })

  test('every flag parses', () => {
    const parsed = config(
      [
        '--upstream', 'http://127.0.0.1:9/v1/', '--upstream-key-env', 'MY_KEY', '--host', '0.0.0.0', '--port', '0',
        '--concurrency', '50', '--stream-weight', '3', '--buffered-weight', '1', '--rate', '60/60s',
        '--queue-timeout', '500ms', '--idle-timeout', '1m', '--retries', '4', '--workers', '2', '--body-limit', '64kb',
        '--gateway-keys', 'a,b', '--drain-timeout', '10s', '--transform', './t.mjs',
        '--upstream-client', 'fetch',
      ],
      { MY_KEY: 'sk-secret' },
    )
    expect(parsed).toEqual({
      upstream: 'http://127.0.0.1:9/v1', upstreamKeyEnv: 'MY_KEY', upstreamKey: 'sk-secret', host: '0.0.0.0', port: 0,
      concurrency: 50, streamWeight: 3, bufferedWeight: 1, rate: { rate: 60, per: 60_000 }, queueTimeoutMs: 500,
      idleTimeoutMs: 60_000, retries: 4, workers: 2, bodyLimitBytes: 65_536, gatewayKeys: ['a', 'b'], drainTimeoutMs: 10_000,
      transform: './t.mjs', upstreamClient: 'fetch', upstreamHttp2: false,
    })
  })

  test('--upstream-http2 takes no value; SLUICE_UPSTREAM_HTTP2 takes 1/true or 0/false', () => {
    const upstream = ['--upstream', 'http://127.0.0.1:9/v1']
    expect(config([...upstream, '--upstream-http2']).upstreamHttp2).toBe(true)
    expect(config(upstream).upstreamHttp2).toBe(false)
    for (const [text, on] of [['1', true], ['true', true], ['0', false], ['false', false]] as const) {
      expect(config(upstream, { SLUICE_UPSTREAM_HTTP2: text }).upstreamHttp2).toBe(on)
    }
    expect(config([...upstream, '--upstream-http2'], { SLUICE_UPSTREAM_HTTP2: '0' }).upstreamHttp2).toBe(true)
    expect(config([...upstream, '--upstream-http2', '--workers', '2']).upstreamHttp2).toBe(true)
    expect(helpText()).toMatch(/--upstream-http2 {2,}HTTP\/2 upstream: .*h2c.*\(SLUICE_UPSTREAM_HTTP2\)/)
  })

  test('each flag can come from SLUICE_<NAME>, and the flag wins', () => {
    const env = { SLUICE_IDLE_TIMEOUT: '2s', SLUICE_PORT: '9000', SLUICE_GATEWAY_KEYS: 'x', OPENAI_API_KEY: 'sk-env' }
    expect(config([], env)).toMatchObject({ idleTimeoutMs: 2000, port: 9000, gatewayKeys: ['x'], upstreamKey: 'sk-env' })
    expect(config(['--port', '1234'], env).port).toBe(1234)
  })

  test.each([
    [['--port', '70000'], /^Invalid --port `70000`: expected an integer from 0 to 65535$/],
    [['--idle-timeout', 'soon'], /^Invalid --idle-timeout `soon`: expected a duration like 500ms, 5s or 1m$/],
    [['--queue-timeout', '0s'], /^Invalid --queue-timeout `0s`: expected a duration > 0$/],
    [['--rate', '60'], /^Invalid --rate `60`: expected COUNT\/DURATION like 60\/60s$/],
    [['--body-limit', 'huge'], /^Invalid --body-limit `huge`/],
    [['--concurrency', '0'], /^Invalid --concurrency `0`/],
    [['--upstream', 'ftp://x'], /^Invalid --upstream `ftp:\/\/x`: expected an http or https URL$/],
    [['--upstream', 'http://u:p@x/v1'], /^Invalid --upstream .*credentials/],
    [['--stream-weight', '5', '--concurrency', '4'], /^Invalid --stream-weight `5`: must not exceed --concurrency \(4\)$/],
    [['--gateway-keys', 'a,,b'], /^Invalid --gateway-keys `a,,b`/],
    [['--upstream-client', 'curl'], /^Invalid --upstream-client `curl`: expected `undici` or `fetch`$/],
    [
      ['--upstream', 'http://x/v1', '--upstream-http2', '--upstream-client', 'fetch'],
      /^Invalid --upstream-http2 with --upstream-client `fetch`: HTTP\/2 needs --upstream-client undici$/,
    ],
    [['--upstream-http2'], /^Invalid --upstream-http2: needs --upstream \(the embedded demo model is called in-process\)$/],
    [['--upstream', 'http://x/v1', '--upstream-http2=1'], /--upstream-http2/],
    [['--bogus', '1'], /Unknown option '--bogus'/],
    [['--port'], /--port/],
  ])('%j is a one-line usage error naming the flag and value', (argv, pattern) => {
    expect(usageError(argv)).toMatch(pattern)
  })

  test('a bad env var is reported under its own name', () => {
    expect(usageError([], { SLUICE_RETRIES: 'many' })).toMatch(/^Invalid SLUICE_RETRIES `many`/)
    expect(usageError(['--upstream', 'http://x/v1'], { SLUICE_UPSTREAM_HTTP2: 'yes' })).toBe(
      'Invalid SLUICE_UPSTREAM_HTTP2 `yes`: expected 1, true, 0 or false',
    )
  })

  test('--help and --version', () => {
    expect(parseCli(['--help'], {})).toEqual({ kind: 'help' })
    expect(parseCli(['--version'], {})).toEqual({ kind: 'version' })
    for (const flag of ['--upstream', '--upstream-key-env', '--rate', '--drain-timeout', 'SLUICE_IDLE_TIMEOUT']) {
      expect(helpText()).toContain(flag)
    }
  })
})

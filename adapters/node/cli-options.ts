/**
 * Flags of the `sluice` binary. Other tools script these exact names; each flag can also be set from the env var
 * `SLUICE_<NAME>` (`--idle-timeout` ← `SLUICE_IDLE_TIMEOUT`), and a flag wins over its env var.
 * Any invalid flag or value is a CliUsageError whose message is one line naming the flag and the value.
 */
import { parseArgs } from 'node:util'
import type { GatewayConfig } from '../../core/gateway/from-config.ts'
import { parseByteSize, parseDuration, parseRate } from '../../core/units.ts'

/** The gateway's settings (GatewayConfig: upstream, limits, timeouts) plus what only the binary reads. */
export interface CliConfig extends GatewayConfig {
  upstreamKeyEnv: string
  host: string
  port: number
  workers: number
  gatewayKeys: string[]
  drainTimeoutMs: number
  /** A transform module (path or URL) run for every upstream event, in the workers or in-process. */
  transform: string | undefined
  /** How the Node binary calls the upstream: undici's dispatcher API (./upstream-fetch.ts) or the global fetch. */
  upstreamClient: 'undici' | 'fetch'
  /** HTTP/2 to the upstream (h2 by ALPN over https, h2c over http); the undici client only. */
  upstreamHttp2: boolean
}

export type CliCommand = { kind: 'serve'; config: CliConfig } | { kind: 'help' } | { kind: 'version' }

export class CliUsageError extends Error {
  readonly code = 'ERR_CLI_USAGE'
  constructor(message: string) {
    super(message)
    this.name = 'CliUsageError'
  }
}

/** Flag name → [default, help text]. The order is the order of --help. */
const FLAGS = {
  upstream: [undefined, 'URL  upstream base URL including /v1 (default: the embedded demo upstream)'],
  'upstream-key-env': ['OPENAI_API_KEY', 'NAME  env var holding the upstream API key'],
  host: ['127.0.0.1', 'HOST  interface to listen on'],
  port: ['8787', 'N  port to listen on (0 = any free port)'],
  concurrency: ['64', 'N  permits shared by all upstream requests'],
  'stream-weight': ['1', 'N  permits a streaming request holds for its whole stream'],
  'buffered-weight': ['1', 'N  permits a non-streaming request holds'],
  rate: [undefined, 'N/DURATION  upstream request rate limit, e.g. 60/60s (default: none)'],
  'queue-timeout': ['5s', 'D  max wait for rate limit + permits + upstream headers'],
  'idle-timeout': ['30s', 'D  max gap between upstream chunks (not a total timeout)'],
  retries: ['2', 'N  retries before the first chunk (5xx, 429, connect errors)'],
  workers: ['0', 'N  worker threads running upstream streams (0 = in-process)'],
  'body-limit': ['1mb', 'SIZE  max request body, e.g. 64kb, 1mb'],
  'gateway-keys': [undefined, 'k1,k2  require Authorization: Bearer <key> from this set'],
  'drain-timeout': ['30s', 'D  on SIGTERM/SIGINT, how long active streams may finish'],
  transform: [undefined, 'PATH  module run for every upstream event (rewrite/redact/count); Node needs .js/.mjs'],
  'upstream-client': ['undici', 'undici|fetch  upstream client: undici dispatcher on Node, own HTTP/1.1 on Deno; or the global fetch'],
  'upstream-http2': [undefined, '  HTTP/2 upstream: ALPN h2 over https, h2c over http (upstream must serve h2c); undici only'],
} as const satisfies Record<string, readonly [string | undefined, string]>

type FlagName = keyof typeof FLAGS

/** Flags that take no value (`--upstream-http2`); their env var takes 1/true or 0/false. */
const SWITCHES: ReadonlySet<FlagName> = new Set(['upstream-http2'])

export function envName(flag: string): string {
  return `SLUICE_${flag.toUpperCase().replaceAll('-', '_')}`
}

export function helpText(): string {
  const rows = Object.entries(FLAGS).map(([flag, [fallback, text]]) => {
    const [argument, ...description] = text.split('  ')
    const left = argument ? `  --${flag} ${argument}` : `  --${flag}`
    return `${left.padEnd(34)}${description.join('  ')}${fallback === undefined ? '' : ` [${fallback}]`}  (${envName(flag)})`
  })
  return [
    'Usage: sluice [flags]',
    '',
    'A streaming gateway for OpenAI-compatible APIs. Every flag can also be set as SLUICE_<NAME>.',
    '',
    ...rows,
    '  --help                          show this help',
    '  --version                       print the version',
    '',
    'Durations: 500ms, 5s, 1m. Sizes: 64kb, 1mb. Invalid flags exit with code 2.',
  ].join('\n')
}

export function parseCli(argv: readonly string[], env: Record<string, string | undefined>): CliCommand {
  let parsed: ReturnType<typeof parseArgs>
  try {
    parsed = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        ...Object.fromEntries(Object.keys(FLAGS).map((flag) => [flag, { type: flagType(flag as FlagName) }])),
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
    })
  } catch (error) {
    // node:util's messages are multi-line with hints; keep the first line, which names the flag.
    throw new CliUsageError((error as Error).message.split('\n')[0]!.replace(/\. To specify.*$/, ''))
  }
  if (parsed.values.help) return { kind: 'help' }
  if (parsed.values.version) return { kind: 'version' }

  const raw = (flag: FlagName): string | undefined => {
    const value = parsed.values[flag] ?? env[envName(flag)] ?? FLAGS[flag][0]
    return typeof value === 'string' ? value : value === true ? 'true' : undefined
  }
  const read = <T>(flag: FlagName, convert: (text: string) => T): T => {
    const text = raw(flag)!
    try {
      return convert(text)
    } catch (error) {
      const source = parsed.values[flag] !== undefined ? `--${flag}` : env[envName(flag)] !== undefined ? envName(flag) : `--${flag}`
      throw new CliUsageError(`Invalid ${source} \`${text}\`: ${reasonOf(error)}`)
    }
  }
  const integer = (min: number, max = Number.MAX_SAFE_INTEGER) => (text: string): number => {
    if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max) {
      throw new Error(`expected an integer ${max === Number.MAX_SAFE_INTEGER ? `≥ ${min}` : `from ${min} to ${max}`}`)
    }
    return Number(text)
  }

  const upstream = raw('upstream')
  const config: CliConfig = {
    upstream: upstream === undefined ? undefined : read('upstream', parseUpstream),
    upstreamKeyEnv: read('upstream-key-env', (text) => {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(text)) throw new Error('expected an environment variable name')
      return text
    }),
    upstreamKey: undefined,
    host: read('host', (text) => {
      if (text.length === 0 || /[\s/]/.test(text)) throw new Error('expected a host name or IP address')
      return text
    }),
    port: read('port', integer(0, 65535)),
    concurrency: read('concurrency', integer(1)),
    streamWeight: read('stream-weight', integer(1)),
    bufferedWeight: read('buffered-weight', integer(1)),
    rate: raw('rate') === undefined ? undefined : read('rate', (text) => parseRate('rate', text)),
    queueTimeoutMs: read('queue-timeout', (text) => positive(parseDuration('duration', text))),
    idleTimeoutMs: read('idle-timeout', (text) => positive(parseDuration('duration', text))),
    retries: read('retries', integer(0, 20)),
    workers: read('workers', integer(0, 256)),
    bodyLimitBytes: read('body-limit', (text) => parseByteSize('size', text)),
    gatewayKeys:
      raw('gateway-keys') === undefined
        ? []
        : read('gateway-keys', (text) => {
            const keys = text.split(',').map((key) => key.trim())
            if (keys.some((key) => key.length === 0 || /\s/.test(key))) throw new Error('expected comma-separated keys without spaces')
            return keys
          }),
    drainTimeoutMs: read('drain-timeout', (text) => parseDuration('duration', text)),
    transform: raw('transform') === undefined
      ? undefined
      : read('transform', (text) => {
        if (text.trim().length === 0) throw new Error('expected a module path or URL')
        return text
      }),
    upstreamClient: read('upstream-client', (text) => {
      if (text !== 'undici' && text !== 'fetch') throw new Error('expected `undici` or `fetch`')
      return text
    }),
    upstreamHttp2: raw('upstream-http2') === undefined ? false : read('upstream-http2', parseSwitch),
  }
  config.upstreamKey = env[config.upstreamKeyEnv] || undefined
  for (const flag of ['stream-weight', 'buffered-weight'] as const) {
    const weight = flag === 'stream-weight' ? config.streamWeight : config.bufferedWeight
    if (weight > config.concurrency) {
      throw new CliUsageError(`Invalid --${flag} \`${weight}\`: must not exceed --concurrency (${config.concurrency})`)
    }
  }
  checkUpstreamHttp2(config)
  return { kind: 'serve', config }
}

/** HTTP/2 is the undici client's (./http2-pool.ts): Node's global fetch speaks only HTTP/1.1 in Node 20.20. */
function checkUpstreamHttp2(config: CliConfig): void {
  if (!config.upstreamHttp2) return
  if (config.upstream === undefined) {
    throw new CliUsageError('Invalid --upstream-http2: needs --upstream (the embedded demo model is called in-process)')
  }
  if (config.upstreamClient !== 'undici') {
    const client = config.upstreamClient
    throw new CliUsageError(`Invalid --upstream-http2 with --upstream-client \`${client}\`: HTTP/2 needs --upstream-client undici`)
  }
}

function flagType(flag: FlagName): 'boolean' | 'string' {
  return SWITCHES.has(flag) ? 'boolean' : 'string'
}

function parseSwitch(text: string): boolean {
  if (text === '1' || text === 'true') return true
  if (text === '0' || text === 'false' || text === '') return false
  throw new Error('expected 1, true, 0 or false')
}

function parseUpstream(text: string): string {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw new Error('expected an absolute http(s) URL such as https://api.openai.com/v1')
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('expected an http or https URL')
  if (url.username || url.password) throw new Error('credentials do not belong in the URL; use --upstream-key-env')
  return url.href.replace(/\/+$/, '')
}

function positive(ms: number): number {
  if (ms <= 0) throw new Error('expected a duration > 0')
  return ms
}

function reasonOf(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error)
  // parseDuration & co. already say "Invalid <name> `<text>`: <reason>" — keep only the reason.
  return message.replace(/^Invalid [^`]*`[^`]*`: /, '')
}

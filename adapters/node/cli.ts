/**
 * The `sluice` binary: the gateway on the Node adapter, configured by flags/env (./cli-options.ts), with an
 * embedded demo upstream when no `--upstream` is given, Prometheus `/metrics`, a JSON access log line per call,
 * and a graceful drain on SIGTERM/SIGINT.
 */
import { readFileSync } from 'node:fs'
import { createGatewayFromConfig, type RunnerLimits } from '../../core/gateway/from-config.ts'
import type { StreamRunner } from '../../core/gateway/runner.ts'
import { createStreamRunner } from '../../core/pool/stream-runner.ts'
import { createAccessLog, createLineBatcher } from './access-log.ts'
import { CliUsageError, helpText, parseCli, type CliConfig } from './cli-options.ts'
import { serve } from './server.ts'
import { upstreamFetchModule } from './upstream-fetch-module.ts'
import { createUpstreamFetch } from './upstream-fetch.ts'

export { DEMO_UPSTREAM_URL } from '../../core/gateway/from-config.ts'

export async function main(argv: readonly string[]): Promise<void> {
  let command
  try {
    command = parseCli(argv, process.env)
  } catch (error) {
    if (!(error instanceof CliUsageError)) throw error
    process.stderr.write(`sluice: ${error.message}\n`)
    process.exit(2)
  }
  if (command.kind === 'help') return void process.stdout.write(`${helpText()}\n`)
  if (command.kind === 'version') return void process.stdout.write(`sluice ${version()}\n`)
  await run(command.config)
}

async function run(config: CliConfig): Promise<void> {
  // undici's dispatcher for a real upstream, unless --upstream-client fetch (./upstream-fetch.ts says why); the
  // runner (workers or a transform) makes its own from the fetch module, so it is made here only without one.
  const withRunner = config.workers > 0 || config.transform !== undefined
  const upstreamFetch = !withRunner && config.upstream && config.upstreamClient === 'undici'
    ? createUpstreamFetch({ http2: config.upstreamHttp2 })
    : undefined
  const { gateway, runner, telemetry, shutdown } = await createGatewayFromConfig(
    config,
    withRunner
      ? { runner: (limits) => createPoolRunner(config, limits) }
      : upstreamFetch ? { fetch: upstreamFetch } : {},
  )
  const accessLog = createLineBatcher((text) => process.stdout.write(text))
  telemetry.events.on('event', createAccessLog(accessLog.line))
  const server = serve(gateway.fetch, { port: config.port, hostname: config.host })
  let address
  try {
    address = await server.ready()
  } catch (error) {
    process.stderr.write(`sluice: cannot listen on ${config.host}:${config.port}: ${(error as Error).message}\n`)
    process.exit(1)
  }
  process.stdout.write(banner(config, address.url))

  let stopping = false
  const stop = async (signal: NodeJS.Signals): Promise<void> => {
    if (stopping) {
      accessLog.flush()
      process.stderr.write(`sluice: ${signal} again, exiting now\n`)
      process.exit(1)
    }
    stopping = true
    process.stderr.write(`sluice: ${signal}: draining (up to ${config.drainTimeoutMs} ms for ${runner.active} active)\n`)
    // New connections are refused at once; live streams get until the drain deadline, then an error event.
    await shutdown(server, config.drainTimeoutMs)
    accessLog.flush()
    process.stderr.write('sluice: drained, bye\n')
    process.exit(0)
  }
  process.on('SIGTERM', (signal) => void stop(signal))
  process.on('SIGINT', (signal) => void stop(signal))
}

/**
 * `--workers N`: upstream calls run in N worker threads on the same permits, rate limit and telemetry; without
 * `--upstream` each worker serves the embedded demo model itself. Resolves once every worker is up, so a worker
 * that cannot start fails the binary at startup rather than at the first request.
 */
async function createPoolRunner(config: CliConfig, limits: RunnerLimits): Promise<StreamRunner> {
  // With --workers 0 and a --transform, the same runner factory runs in-process: one code path for both.
  const pool = createStreamRunner({
    workers: config.workers,
    semaphore: limits.semaphore,
    ...(limits.rateLimiter ? { rateLimiter: limits.rateLimiter } : {}),
    streamWeight: config.streamWeight,
    bufferedWeight: config.bufferedWeight,
    queueTimeoutMs: config.queueTimeoutMs,
    idleTimeoutMs: config.idleTimeoutMs,
    retry: { maxAttempts: config.retries + 1 },
    telemetry: limits.telemetry,
    ...(config.upstream
      ? config.upstreamClient === 'undici' ? { fetchModule: upstreamFetchModule({ http2: config.upstreamHttp2 }) } : {}
      : { upstream: 'demo' as const }),
    ...(config.transform === undefined ? {} : { transform: config.transform }),
  })
  try {
    await pool.ready
  } catch (error) {
    await pool.close({ timeoutMs: 0 })
    throw error
  }
  return pool
}

function banner(config: CliConfig, url: string): string {
  const upstream = config.upstream ?? 'embedded demo model (no network; pass --upstream URL for a real API)'
  const auth = config.gatewayKeys.length > 0 ? " -H 'authorization: Bearer <one of your --gateway-keys>'" : ''
  const body = JSON.stringify({ model: 'demo', stream: true, messages: [{ role: 'user', content: 'Hello, sluice!' }] })
  return [
    `sluice ${version()} listening on ${url}`,
    `  upstream:    ${upstream}${config.upstream ? ` (client: ${clientName(config)})` : ''}`,
    `  concurrency: ${config.concurrency} permits (stream weight ${config.streamWeight}, buffered ${config.bufferedWeight})` +
      `, workers: ${config.workers === 0 ? 'in-process' : config.workers}`,
    `  timeouts:    queue ${config.queueTimeoutMs} ms, idle ${config.idleTimeoutMs} ms, drain ${config.drainTimeoutMs} ms`,
    `  metrics:     ${url}/metrics   health: ${url}/healthz`,
    '',
    'Try it:',
    `  curl -N ${url}/v1/chat/completions -H 'content-type: application/json'${auth} -d '${body}'`,
    '',
  ].join('\n')
}

function clientName(config: CliConfig): string {
  if (!config.upstreamHttp2) return config.upstreamClient
  return `${config.upstreamClient}, HTTP/2${config.upstream?.startsWith('http:') ? ' h2c' : ''}`
}

function version(): string {
  // dist/adapters/node/cli.js and adapters/node/cli.ts are both three levels below package.json.
  for (const path of ['../../../package.json', '../../package.json']) {
    try {
      return (JSON.parse(readFileSync(new URL(path, import.meta.url), 'utf8')) as { version: string }).version
    } catch {}
  }
  return 'unknown'
}

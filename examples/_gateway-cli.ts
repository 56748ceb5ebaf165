/**
 * The body of examples/bun-gateway.ts and examples/deno-gateway.ts: the `sluice` binary on another runtime. Same
 * flags and SLUICE_<NAME> env (the binary's own parseCli: node:util's parseArgs exists on Bun and Deno), same
 * gateway (createGatewayFromConfig), same JSON access log line per call and the same drain on SIGTERM/SIGINT (a
 * second signal exits at once). Runtime-free: the runtime comes in as a `GatewayHost`.
 */
import { createAccessLog } from '../adapters/node/access-log.ts'
import { CliUsageError, type CliConfig, helpText, parseCli } from '../adapters/node/cli-options.ts'
import { createGatewayFromConfig } from '../core/gateway/from-config.ts'
import type { Serve } from '../core/server.ts'

export interface GatewayHost {
  /** Shown in the banner, e.g. `Bun 1.4.5`. */
  runtime: string
  argv: readonly string[]
  env: Record<string, string | undefined>
  serve: Serve
  /**
   * The runtime's own fetch for a real upstream (examples/deno-gateway.ts: adapters/deno/upstream-fetch.ts);
   * undefined: the global fetch. Not called for the embedded demo model.
   */
  upstreamFetch?: (config: CliConfig) => typeof fetch | undefined
  /** Where this runtime would not give the configuration what it asks for: printed to stderr at startup. */
  warnings?: (config: CliConfig) => string[]
  onSignal(signal: 'SIGTERM' | 'SIGINT', listener: () => void): void
  exit(code: number): void
}

export async function runGateway(host: GatewayHost): Promise<void> {
  let command
  try {
    command = parseCli(host.argv, host.env)
    if (command.kind === 'serve' && command.config.workers > 0) {
      throw new CliUsageError(`Invalid --workers \`${command.config.workers}\`: worker threads need the Node binary`)
    }
  } catch (error) {
    if (!(error instanceof CliUsageError)) throw error
    console.error(`sluice: ${error.message}`)
    return host.exit(2)
  }
  if (command.kind === 'help') return console.log(helpText())
  if (command.kind === 'version') return console.log(`sluice (${host.runtime})`)
  const { config } = command

  const upstreamFetch = config.upstream ? host.upstreamFetch?.(config) : undefined
  const { gateway, runner, telemetry, upstreamUrl, shutdown } = await createGatewayFromConfig(
    config,
    upstreamFetch ? { fetch: upstreamFetch } : {},
  )
  telemetry.events.on('event', createAccessLog((line) => console.log(line)))
  const server = host.serve(gateway.fetch, { port: config.port, hostname: config.host })
  const { url } = await server.ready()
  // The listening URL comes first: the benchmark runner takes the first URL a target prints.
  console.log(`sluice gateway on ${host.runtime} listening on ${url}`)
  const upstream = config.upstream ? upstreamUrl : 'embedded demo model (pass --upstream URL for a real API)'
  console.log(`  upstream: ${upstream}`)
  for (const warning of host.warnings?.(config) ?? []) console.error(`sluice: warning: ${warning}`)

  let stopping = false
  const stop = (signal: string): void => {
    if (stopping) {
      console.error(`sluice: ${signal} again, exiting now`)
      return host.exit(1)
    }
    stopping = true
    console.error(`sluice: ${signal}: draining (up to ${config.drainTimeoutMs} ms for ${runner.active} active)`)
    void shutdown(server, config.drainTimeoutMs).then(() => {
      console.error('sluice: drained, bye')
      host.exit(0)
    })
  }
  host.onSignal('SIGTERM', () => stop('SIGTERM'))
  host.onSignal('SIGINT', () => stop('SIGINT'))
}

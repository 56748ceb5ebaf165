/**
 * Builds a whole gateway (permits, optional rate limit, Prometheus metrics, telemetry, the runner, the gateway)
 * from the binary's settings, and shuts it down the way the binary does. Runtime-free, so the Node binary, the
 * Bun and Deno gateway examples and the cross-runtime contract fixture all assemble the same thing and differ
 * only in how they serve it and listen for signals.
 * @module
 */
import { createDemoUpstream, type DemoUpstreamOptions } from '../demo-upstream.ts'
import { createPrometheusMetrics, type PrometheusMetrics } from '../metrics/prometheus.ts'
import { SharedRateLimiter } from '../rate-limiter.ts'
import { SharedSemaphore } from '../semaphore.ts'
import type { Server } from '../server.ts'
import { createStreamTelemetry, type StreamTelemetry } from '../telemetry/stream-telemetry.ts'
import { createUpstreamClient } from '../upstream/client.ts'
import { createGateway, type Gateway } from './gateway.ts'
import type { StreamRunner } from './runner.ts'

/** The upstream base URL used for the embedded demo model; never resolved (its fetch is in-process). */
export const DEMO_UPSTREAM_URL = 'http://demo-upstream.sluice.invalid/v1'

/** The settings a gateway is built from: the binary's parsed flags (`CliConfig`) satisfy it. */
export interface GatewayConfig {
  /** Upstream base URL including `/v1`; undefined → the embedded demo model. */
  upstream: string | undefined
  /** Sent upstream as `Authorization: Bearer …` (the binary reads it from `--upstream-key-env`; never printed). */
  upstreamKey: string | undefined
  concurrency: number
  streamWeight: number
  bufferedWeight: number
  rate: { rate: number; per: number } | undefined
  queueTimeoutMs: number
  idleTimeoutMs: number
  retries: number
  bodyLimitBytes: number
  gatewayKeys: readonly string[]
}

/** What a custom runner (the worker pool) must share with the gateway so limits and metrics stay global. */
export interface RunnerLimits {
  semaphore: SharedSemaphore
  rateLimiter: SharedRateLimiter | undefined
  telemetry: StreamTelemetry
}

export interface GatewayFromConfigOptions {
  /** Builds the runner; default: the in-process upstream client with the config's limits and timeouts. */
  runner?: (limits: RunnerLimits) => StreamRunner | Promise<StreamRunner>
  /** Pacing of the embedded demo model (used when `config.upstream` is undefined). */
  demo?: DemoUpstreamOptions
  /**
   * The fetch the default runner calls `config.upstream` with (the Node binary passes its undici-based one,
   * adapters/node/upstream-fetch.ts); default: the global fetch. Not used for the demo model or a custom runner.
   */
  fetch?: typeof fetch
}

export interface ConfiguredGateway {
  readonly gateway: Gateway
  readonly runner: StreamRunner
  readonly semaphore: SharedSemaphore
  readonly rateLimiter: SharedRateLimiter | undefined
  /** Lifecycle events (`telemetry.events.on('event', …)` for an access log) and the metrics they feed. */
  readonly telemetry: StreamTelemetry
  readonly metrics: PrometheusMetrics
  /** Where upstream calls go (the demo URL when the embedded model serves them). */
  readonly upstreamUrl: string
  /**
   * The graceful stop: refuse new API requests (503, /healthz 503) and stop accepting connections at once, let
   * live streams finish for up to `drainTimeoutMs`, then end the rest with an SSE error event; resolves once the
   * server is closed and the metrics provider shut down.
   */
  shutdown(server: Pick<Server, 'close'>, drainTimeoutMs: number): Promise<void>
}

export async function createGatewayFromConfig(
  config: GatewayConfig,
  options: GatewayFromConfigOptions = {},
): Promise<ConfiguredGateway> {
  const metrics = createPrometheusMetrics()
  const semaphore = new SharedSemaphore({ capacity: config.concurrency })
  const rateLimiter = config.rate ? new SharedRateLimiter(config.rate) : undefined
  const telemetry = createStreamTelemetry({ meter: metrics.meter, permits: { upstream: semaphore } })
  const runner = options.runner
    ? await options.runner({ semaphore, rateLimiter, telemetry })
    : createUpstreamClient({
        semaphore,
        ...(rateLimiter ? { rateLimiter } : {}),
        streamWeight: config.streamWeight,
        bufferedWeight: config.bufferedWeight,
        queueTimeoutMs: config.queueTimeoutMs,
        idleTimeoutMs: config.idleTimeoutMs,
        retry: { maxAttempts: config.retries + 1 },
        telemetry,
        ...(config.upstream
          ? options.fetch ? { fetch: options.fetch } : {}
          : { fetch: createDemoUpstream(options.demo) as typeof fetch }),
      })
  const upstreamUrl = config.upstream ?? DEMO_UPSTREAM_URL
  const gateway = createGateway({
    upstreamUrl,
    ...(config.upstreamKey ? { upstreamKey: config.upstreamKey } : {}),
    runner,
    bodyLimitBytes: config.bodyLimitBytes,
    gatewayKeys: config.gatewayKeys,
    metrics,
  })
  return {
    gateway,
    runner,
    semaphore,
    rateLimiter,
    telemetry,
    metrics,
    upstreamUrl,
    async shutdown(server, drainTimeoutMs) {
      gateway.drain()
      // Stop accepting now; the server's own deadline is a backstop past the gateway's, which ends the streams
      // still open at `drainTimeoutMs` with an error event so clients learn why their stream stopped.
      const serverClosed = server.close({ timeoutMs: drainTimeoutMs + 2_000 })
      await gateway.close({ timeoutMs: drainTimeoutMs })
      await serverClosed
      await metrics.shutdown()
    },
  }
}

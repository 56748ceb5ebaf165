/**
 * A streaming gateway on Deno, assembled from sluice's parts:
 * `deno run --allow-net --allow-env examples/deno-server.ts`, then
 * `curl -N http://127.0.0.1:3000/v1/chat/completions -H 'content-type: application/json'
 *   -d '{"model":"demo","stream":true,"messages":[{"role":"user","content":"Hi"}]}'`.
 * Without UPSTREAM_URL it answers from the embedded demo model; with `UPSTREAM_URL=https://api.openai.com/v1` and
 * OPENAI_API_KEY it proxies that API. PORT and HOST pick the address; SIGTERM/SIGINT drain in-flight streams (up
 * to 10 s). Add `--unstable-no-legacy-abort` to opt into Deno's coming request.signal behaviour (and silence its
 * one-time deprecation warning). In an application the imports are `jsr:@sluice/sluice` and
 * `jsr:@sluice/sluice/deno`; examples/deno-gateway.ts is the same with every flag of the `sluice` binary.
 */
import { serve } from '../adapters/deno/mod.ts'
import { createDemoUpstream } from '../core/demo-upstream.ts'
import { createGateway } from '../core/gateway/gateway.ts'
import { createPrometheusMetrics } from '../core/metrics/prometheus.ts'
import { SharedSemaphore } from '../core/semaphore.ts'
import { createStreamTelemetry } from '../core/telemetry/stream-telemetry.ts'
import { createUpstreamClient } from '../core/upstream/client.ts'

const upstreamUrl = Deno.env.get('UPSTREAM_URL')
const upstreamKey = Deno.env.get('OPENAI_API_KEY')
const metrics = createPrometheusMetrics()
// 16 upstream streams at once, each holding its permit until its last byte; the rest queue for up to 5 s.
const semaphore = new SharedSemaphore({ capacity: 16 })
const client = createUpstreamClient({
  semaphore,
  queueTimeoutMs: 5_000,
  idleTimeoutMs: 30_000,
  telemetry: createStreamTelemetry({ meter: metrics.meter, permits: { upstream: semaphore } }),
  ...(upstreamUrl ? {} : { fetch: createDemoUpstream() as typeof fetch }),
})
const gateway = createGateway({
  upstreamUrl: upstreamUrl ?? 'http://demo-upstream.sluice.invalid/v1',
  ...(upstreamKey ? { upstreamKey } : {}),
  runner: client,
  metrics,
})

const server = serve(gateway.fetch, {
  port: Number(Deno.env.get('PORT') ?? 3000),
  hostname: Deno.env.get('HOST') ?? '127.0.0.1',
})
const { url } = await server.ready()
console.log(`sluice gateway on Deno ${Deno.version.deno} listening on ${url}`)
console.log(`  upstream: ${upstreamUrl ?? 'embedded demo model (set UPSTREAM_URL for a real API)'}`)

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  Deno.addSignalListener(signal, async () => {
    // Refuse new work at once; live streams get 10 s, then end with an SSE error event.
    gateway.drain()
    const closed = server.close({ timeoutMs: 12_000 })
    await gateway.close({ timeoutMs: 10_000 })
    await closed
    Deno.exit(0)
  })
}

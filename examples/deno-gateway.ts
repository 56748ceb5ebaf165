/**
 * The `sluice` binary on Deno:
 * `deno run --allow-net --allow-env examples/deno-gateway.ts --upstream https://api.openai.com/v1`
 * (key from OPENAI_API_KEY, or the env var named by --upstream-key-env). Takes every flag of `sluice --help`
 * except `--workers`; without `--upstream` it serves the embedded demo model. Add `--unstable-no-legacy-abort` to
 * opt into Deno's coming request.signal behaviour. The benchmark runs it as the `sluice-deno` target
 * (bench/e2e/targets.ts).
 *
 * The upstream is called through adapters/deno/upstream-fetch.ts (HTTP/1.1 on Deno.connect: it says why), unless
 * `--upstream-client fetch` asks for Deno's global fetch, or a proxy variable is set (that client has no proxy
 * support; Deno's fetch reads them).
 */
import { serve } from '../adapters/deno/mod.ts'
import { createUpstreamFetch } from '../adapters/deno/upstream-fetch.ts'
import { runGateway } from './_gateway-cli.ts'

const PROXY_VARIABLES = ['http_proxy', 'https_proxy', 'all_proxy']
const env = Deno.env.toObject()
const proxied = Object.keys(env).some((name) => PROXY_VARIABLES.includes(name.toLowerCase()) && env[name] !== '')

await runGateway({
  runtime: `Deno ${Deno.version.deno}`,
  argv: Deno.args,
  env,
  serve,
  upstreamFetch: (config) => (config.upstreamClient === 'fetch' || proxied ? undefined : createUpstreamFetch()),
  onSignal: (signal, listener) => Deno.addSignalListener(signal, listener),
  exit: (code) => Deno.exit(code),
})

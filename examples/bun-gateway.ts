/**
 * The `sluice` binary on Bun: `bun examples/bun-gateway.ts --upstream https://api.openai.com/v1 --port 8787`
 * (key from OPENAI_API_KEY, or the env var named by --upstream-key-env). Takes every flag of `sluice --help`
 * except `--workers`; without `--upstream` it serves the embedded demo model. The benchmark runs it as the
 * `sluice-bun` target (bench/e2e/targets.ts).
 */
import { serve } from '../adapters/bun/mod.ts'
import { runGateway } from './_gateway-cli.ts'

await runGateway({
  runtime: `Bun ${Bun.version}`,
  argv: Bun.argv.slice(2),
  env: Bun.env,
  serve,
  onSignal: (signal, listener) => process.on(signal, listener),
  exit: (code) => process.exit(code),
})

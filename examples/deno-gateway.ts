/**
 * The `sluice` binary on Deno:
 * `deno run --allow-net --allow-env examples/deno-gateway.ts --upstream https://api.openai.com/v1`
 * (key from OPENAI_API_KEY, or the env var named by --upstream-key-env). Takes every flag of `sluice --help`
 * except `--workers`; without `--upstream` it serves the embedded demo model. Add `--unstable-no-legacy-abort` to
 * opt into Deno's coming request.signal behaviour. The benchmark runs it as the `sluice-deno` target
 * (bench/e2e/targets.ts).
 */
import { serve } from '../adapters/deno/mod.ts'
import { runGateway } from './_gateway-cli.ts'

await runGateway({
  runtime: `Deno ${Deno.version.deno}`,
  argv: Deno.args,
  env: Deno.env.toObject(),
  serve,
  onSignal: (signal, listener) => Deno.addSignalListener(signal, listener),
  exit: (code) => Deno.exit(code),
})

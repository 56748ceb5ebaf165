/**
 * The `sluice` binary on Bun: `bun examples/bun-gateway.ts --upstream https://api.openai.com/v1 --port 8787`
 * (key from OPENAI_API_KEY, or the env var named by --upstream-key-env). Takes every flag of `sluice --help`
 * except `--workers`; without `--upstream` it serves the embedded demo model. The benchmark runs it as the
 * `sluice-bun` target (bench/e2e/targets.ts).
 */
import type { CliConfig } from '../adapters/node/cli-options.ts'
import { serve } from '../adapters/bun/mod.ts'
import { runGateway } from './_gateway-cli.ts'

/**
 * Bun's fetch runs at most BUN_CONFIG_MAX_HTTP_REQUESTS requests at once (default 256, read once at startup:
 * setting it from JavaScript has no effect; https://bun.com/docs/runtime/networking/fetch). More permits than that
 * would let calls hold a permit while they wait inside Bun's fetch, against their queue timeout; measured here on
 * 1.4.5: 600 concurrent streaming fetches ran 256 at a time, and the benchmark's 1000 concurrent 1 s streams
 * reached 0.49× of going direct until the target set it.
 */
function fetchLimitWarnings(config: CliConfig): string[] {
  const limit = Number(Bun.env.BUN_CONFIG_MAX_HTTP_REQUESTS ?? 256)
  if (config.upstream === undefined || config.concurrency <= limit) return []
  return [
    `Bun's fetch sends at most ${limit} upstream requests at once (BUN_CONFIG_MAX_HTTP_REQUESTS), fewer than ` +
      `--concurrency ${config.concurrency}: calls past ${limit} wait inside fetch. Start Bun with ` +
      `BUN_CONFIG_MAX_HTTP_REQUESTS=${Math.min(config.concurrency, 65_336)} (at most 65336).`,
  ]
}

await runGateway({
  runtime: `Bun ${Bun.version}`,
  argv: Bun.argv.slice(2),
  env: Bun.env,
  serve,
  warnings: fetchLimitWarnings,
  onSignal: (signal, listener) => process.on(signal, listener),
  exit: (code) => process.exit(code),
})

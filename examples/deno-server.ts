/**
 * A Deno server on sluice: `deno run --allow-net --allow-env examples/deno-server.ts`, then
 * `curl -N 'http://127.0.0.1:3000/?n=5'`. PORT and HOST pick the address; SIGTERM/SIGINT drain in-flight streams
 * (up to 10 s) before exiting. Add `--unstable-no-legacy-abort` to opt into Deno's coming request.signal behaviour
 * (and silence its one-time deprecation warning). In an application the import is
 * `import { serve } from 'jsr:@sluice/sluice/deno'`.
 */
import { serve } from '../adapters/deno/mod.ts'
import { sseDemo } from './_sse-demo.ts'

const server = serve(sseDemo, {
  port: Number(Deno.env.get('PORT') ?? 3000),
  hostname: Deno.env.get('HOST') ?? '127.0.0.1',
})
const { url } = await server.ready()
console.log(`sluice demo on Deno ${Deno.version.deno} listening on ${url}`)

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  Deno.addSignalListener(signal, async () => {
    await server.close({ timeoutMs: 10_000 })
    Deno.exit(0)
  })
}

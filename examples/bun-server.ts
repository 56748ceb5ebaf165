/**
 * A Bun server on sluice: `bun examples/bun-server.ts`, then `curl -N 'http://127.0.0.1:3000/?n=5'`.
 * PORT and HOST pick the address; SIGTERM/SIGINT drain in-flight streams (up to 10 s) before exiting.
 * In an application the import is `import { serve } from 'sluice/bun'`.
 */
import { serve } from '../adapters/bun/mod.ts'
import { sseDemo } from './_sse-demo.ts'

const server = serve(sseDemo, {
  port: Number(Bun.env.PORT ?? 3000),
  hostname: Bun.env.HOST ?? '127.0.0.1',
})
const { url } = await server.ready()
console.log(`sluice demo on Bun ${Bun.version} listening on ${url}`)

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.once(signal, async () => {
    await server.close({ timeoutMs: 10_000 })
    process.exit(0)
  })
}

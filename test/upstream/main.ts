/**
 * Runs the test upstream as its own process, for bun/deno scenarios and benchmarks:
 *
 *   node --import tsx test/upstream/main.ts [--port 0] [--api-key sk-test] [--defaults 'chunks=50&delay=1'] [--bench]
 *     [--http2]
 *
 * Prints one line `LISTENING <url>` (the base URL including /v1) once it accepts connections, then serves until
 * SIGINT/SIGTERM or until stdin closes (so it dies with the process that spawned it). Records are readable over
 * HTTP at `GET <origin>/__upstream/requests[?id=…]`. `--defaults` takes the `model` parameters of ./behaviour.ts.
 * `--bench`: the cheap benchmark mode of ./bench-mode.ts (what bench/e2e runs). `--http2`: h2c (HTTP/2 with prior
 * knowledge over cleartext) instead of HTTP/1.1, the same routes and behaviours, many streams per connection.
 * @module
 */
import { parseArgs } from 'node:util'
import { parseBehaviour } from './behaviour.ts'
import { startUpstream } from './server.ts'

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    hostname: { type: 'string', default: '127.0.0.1' },
    'api-key': { type: 'string' },
    defaults: { type: 'string' },
    bench: { type: 'boolean', default: false },
    http2: { type: 'boolean', default: false },
  },
})

const parsedDefaults = values.defaults === undefined ? undefined : parseBehaviour(`mock?${values.defaults}`)
const upstream = await startUpstream({
  port: Number(values.port),
  hostname: values.hostname,
  bench: values.bench,
  http2: values.http2,
  ...(values['api-key'] === undefined ? {} : { apiKey: values['api-key'] }),
  ...(parsedDefaults === undefined ? {} : { defaults: withoutId(parsedDefaults) }),
})
console.log(`LISTENING ${upstream.url}`)

const stop = (): void => {
  void upstream.close().then(() => process.exit(0))
}
process.once('SIGINT', stop)
process.once('SIGTERM', stop)
process.stdin.on('end', stop).on('close', stop).resume()

/** `id` stays per request (or `anon-N`): a default id would merge every request's attempt count. */
function withoutId<T extends { id: string }>(behaviour: T): Omit<T, 'id'> {
  const { id: _id, ...rest } = behaviour
  return rest
}

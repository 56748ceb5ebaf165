/**
 * `npm run bench`: runs every `bench/*.bench.ts` that exports `run(): Promise<void>`, one after the other, in
 * file-name order. Add a benchmark by adding such a file; nothing to register here.
 *
 *   npm run bench                      all of them
 *   npm run bench -- semaphore rate    only files whose name contains one of the words
 *
 * Each file can also run alone (`node --import tsx bench/x.bench.ts`, `bun bench/…`, `deno run -A bench/…`).
 * Figures are indicative: one machine, often shared (see bench/README.md).
 */
import { readdirSync } from 'node:fs'
import process from 'node:process'
import { pathToFileURL } from 'node:url'

const directory = new URL('./', import.meta.url)
const filters = process.argv.slice(2)
const files = readdirSync(directory)
  .filter((name) => name.endsWith('.bench.ts'))
  .filter((name) => filters.length === 0 || filters.some((word) => name.includes(word)))
  .sort()

let failed = 0
for (const name of files) {
  const module = (await import(pathToFileURL(new URL(name, directory).pathname).href)) as { run?: unknown }
  if (typeof module.run !== 'function') {
    console.log(`\n## ${name}: skipped (no exported run())`)
    continue
  }
  console.log(`\n## ${name}\n`)
  const started = performance.now()
  try {
    await (module.run as () => Promise<void>)()
    console.log(`(${name}: ${((performance.now() - started) / 1000).toFixed(1)} s)`)
  } catch (error) {
    failed++
    console.error(`${name} failed:`, error)
  }
}
if (files.length === 0) console.log(`no bench/*.bench.ts matches ${filters.join(', ')}`)
process.exitCode = failed > 0 ? 1 : 0

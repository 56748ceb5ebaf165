// Imports the core barrel from source under the current runtime and reports which of the names in argv are missing.
import * as core from '../../core/mod.ts'
import { runMain } from './_verdict.ts'

declare const process: { argv: string[] } | undefined
declare const Deno: { args: string[] } | undefined

await runMain(async () => {
  const names = typeof Deno !== 'undefined' ? Deno.args : process!.argv.slice(2)
  return { missing: names.filter((name) => typeof (core as Record<string, unknown>)[name] !== 'function') }
})

#!/usr/bin/env node
// The `sluice` binary. Node 20 cannot run TypeScript, so this shim loads the build output (made by `npm ci`
// through the `prepare` script, or `npm run build`).
import('../../dist/adapters/node/cli.js').then(
  (cli) => cli.main(process.argv.slice(2)),
  (error) => {
    console.error(`sluice: cannot load the build (run \`npm run build\`): ${error.message}`)
    process.exit(1)
  },
)

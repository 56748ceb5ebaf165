#!/usr/bin/env node
// Lint rule: core/ is runtime-free. No `node:` (or bun:) import and no `Bun`/`Deno` global anywhere in core/,
// except core/pool/, the worker-pool module, which may reach node:worker_threads through piscina.
// Used by `npm run lint` and by test/package.test.ts (so the rule itself is tested).
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const ALLOWED = ['core/pool/']
const RULES = [
  { name: 'node: import', pattern: /(?:from\s*|import\s*\(\s*|import\s+)['"](?:node:|bun:|bun['"])/ },
  { name: 'runtime global', pattern: /(?<![\w.$'"`])(?:Deno|Bun)\s*\./ },
  { name: 'bare Node builtin import', pattern: /from\s*['"](?:fs|path|http|https|net|os|worker_threads|child_process|stream|crypto|url|util|events|buffer)(?:\/[\w/]*)?['"]/ },
]

function* walk(dir) {
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry)
    if (statSync(path).isDirectory()) yield* walk(path)
    else if (/\.(?:ts|mts|js|mjs)$/.test(entry)) yield path
  }
}

/** Returns one string per violation: `core/x.ts:12: node: import: <line>`. */
export function lintCore(root = ROOT) {
  const problems = []
  for (const file of walk(join(root, 'core'))) {
    const rel = relative(root, file).split('\\').join('/')
    if (ALLOWED.some((prefix) => rel.startsWith(prefix))) continue
    const lines = readFileSync(file, 'utf8').split('\n')
    lines.forEach((line, index) => {
      const code = line.replace(/\/\/.*$/, '')
      if (/^\s*\*/.test(code)) return // inside a block comment
      for (const rule of RULES) {
        if (rule.pattern.test(code)) problems.push(`${rel}:${index + 1}: ${rule.name}: ${line.trim()}`)
      }
    })
  }
  return problems
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const problems = lintCore()
  if (problems.length > 0) {
    console.error(`core/ must be runtime-free (only core/pool/ may use node:*):\n${problems.join('\n')}`)
    process.exit(1)
  }
  console.log('lint: core/ is runtime-free')
}

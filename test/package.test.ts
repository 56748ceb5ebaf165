import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, test } from 'vitest'
// @ts-expect-error: plain .mjs script without declarations
import { lintCore } from './_lint-core.mjs'
import { ROOT } from './_runtimes.ts'

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'))
const deno = JSON.parse(readFileSync(join(ROOT, 'deno.json'), 'utf8'))

/** package.json points at built JS (dist/x.js); deno.json at the source (x.ts). Both must name the same module. */
function sourceOf(target: string): string {
  return target.replace(/^\.\/dist\//, './').replace(/\.js$/, '.ts')
}

describe('package', () => {
  test('package.json and deno.json export the same entry points from the same sources', () => {
    const npmExports = Object.fromEntries(
      Object.entries(pkg.exports as Record<string, { default: string }>).map(([key, value]) => [key, sourceOf(value.default)]),
    )
    expect(npmExports).toEqual(deno.exports)
    expect(Object.keys(deno.exports)).toEqual(['.', './node', './bun', './deno', './pool'])
    expect(deno.version).toBe(pkg.version)
  })

  test('every npm dependency is mapped in deno.json with an npm: specifier', () => {
    for (const name of Object.keys(pkg.dependencies)) {
      expect(deno.imports[name], name).toMatch(new RegExp(`^npm:${name.replace('/', '\\/')}@`))
    }
  })

  test('the binary is declared', () => {
    expect(pkg.bin).toEqual({ sluice: './adapters/node/bin.js' })
    expect(pkg.type).toBe('module')
  })

  test('deno publish --dry-run passes (JSR-ready: exports resolve, no slow types)', () => {
    const deno = join(ROOT, 'node_modules', '.bin', 'deno')
    const result = spawnSync(deno, ['publish', '--dry-run', '--allow-dirty'], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } })
    const output = `${result.stdout}${result.stderr}`
    expect(result.status, output).toBe(0)
    expect(output).toContain('Dry run complete')
    // The only accepted warning: the worker pool's dynamic import of a user's transform module (a URL known only at
    // run time) and of tsx's register hook when Node runs the sources; neither goes through an import map.
    const warnings = [...output.matchAll(/warning\[([\w-]+)\]/g)].map((match) => match[1])
    expect(warnings.filter((kind) => kind !== 'unanalyzable-dynamic-import'), output).toEqual([])
  })

  test('core/ is runtime-free', () => {
    expect(lintCore()).toEqual([])
  })

  test('the core lint rule catches node: imports and runtime globals outside core/pool', () => {
    const root = mkdtempSync(join(tmpdir(), 'sluice-lint-'))
    mkdirSync(join(root, 'core', 'pool'), { recursive: true })
    writeFileSync(join(root, 'core', 'bad.ts'), "import { Worker } from 'node:worker_threads'\nconst x = Deno.env\n")
    writeFileSync(join(root, 'core', 'pool', 'ok.ts'), "import { Worker } from 'node:worker_threads'\n")
    writeFileSync(join(root, 'core', 'fine.ts'), "// mentions node:fs in a comment only\nexport const y = 'Deno.'\n")
    const problems: string[] = lintCore(root)
    expect(problems).toHaveLength(2)
    expect(problems[0]).toMatch(/^core\/bad\.ts:1: node: import/)
    expect(problems[1]).toMatch(/^core\/bad\.ts:2: runtime global/)
  })
})

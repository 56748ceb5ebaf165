/** The machine and software a result came from, so RESULTS.md can be read (and distrusted) later. */
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { cpus, loadavg, release, totalmem } from 'node:os'
import { ROOT } from './processes.ts'

/** The bun and deno binaries the repo installs from npm (devDependencies), the ones the targets run. */
const BIN_PATHS = { bun: `${ROOT}node_modules/.bin/bun`, deno: `${ROOT}node_modules/.bin/deno` } as const

export interface MachineInfo {
  cpuModel: string
  cores: number
  memoryGiB: number
  kernel: string
  loadAverage: string
  node: string
  bun: string
  deno: string
  undici: string
  sluiceCommit: string
}

function firstLine(argv: string[]): string {
  const result = spawnSync(argv[0]!, argv.slice(1), { cwd: ROOT, encoding: 'utf8', timeout: 10_000 })
  return result.status === 0 ? (result.stdout.split('\n')[0] ?? '').trim() : 'unavailable'
}

export function machineInfo(): MachineInfo {
  let cpuModel = cpus()[0]?.model ?? 'unknown'
  try {
    cpuModel = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpuModel
  } catch {
    // not Linux: os.cpus() is good enough
  }
  const dirty = firstLine(['git', 'status', '--porcelain', '--untracked-files=no']) === '' ? '' : ' (+ local changes)'
  const undici = JSON.parse(readFileSync(`${ROOT}node_modules/undici/package.json`, 'utf8')) as { version: string }
  return {
    cpuModel,
    cores: cpus().length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: release(),
    loadAverage: loadavg().map((n) => n.toFixed(2)).join(' '),
    node: process.version,
    bun: firstLine([BIN_PATHS.bun, '--version']),
    deno: firstLine([BIN_PATHS.deno, '--version']).replace(/^deno\s+/, ''),
    undici: undici.version,
    sluiceCommit: firstLine(['git', 'rev-parse', '--short', 'HEAD']) + dirty,
  }
}

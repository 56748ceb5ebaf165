#!/usr/bin/env node
// The npm registry this project installs from serves only the linux-x64 build of `deno` (@deno/linux-x64-glibc);
// `npm install` then leaves deno's other optional platform packages out of package-lock.json, and `npm ci` refuses
// a lock that lacks them. Platform-guarded entries (os/cpu) are never fetched on a non-matching machine, so adding
// them back makes `npm ci` work here and elsewhere. Run after any `npm install` that rewrites the lock.
import { readFileSync, writeFileSync } from 'node:fs'

const path = new URL('../package-lock.json', import.meta.url)
const lock = JSON.parse(readFileSync(path, 'utf8'))
const version = lock.packages['node_modules/deno'].version
const platforms = { 'darwin-arm64': ['darwin', 'arm64'], 'darwin-x64': ['darwin', 'x64'], 'linux-arm64-glibc': ['linux', 'arm64'], 'win32-arm64': ['win32', 'arm64'], 'win32-x64': ['win32', 'x64'] }
for (const [name, [os, cpu]] of Object.entries(platforms)) {
  lock.packages[`node_modules/@deno/${name}`] ??= { version, cpu: [cpu], os: [os], optional: true, license: 'MIT' }
}
lock.packages = Object.fromEntries(Object.entries(lock.packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a.localeCompare(b))))
writeFileSync(path, `${JSON.stringify(lock, null, 2)}\n`)

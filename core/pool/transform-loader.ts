/**
 * Where a transform module is and how it is loaded: the same dynamic `import()` in every worker and in-process,
 * so both modes run the same module the same way (contract: ../upstream/transform.ts).
 * @module
 */
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { checkTransformFactory, type TransformFactory } from '../upstream/transform.ts'
import { invalidOption } from '../validate.ts'

/**
 * The module URL for a `transform` option: a URL (or URL string: `file:`, `data:`, `https:` on Deno) as is; a file
 * path resolved against the current directory. Resolved once on the main thread, so workers agree on it.
 */
export function transformUrl(specifier: unknown): string {
  return moduleUrl('transform', specifier)
}

/** The same for any module option (`transform`, `fetchModule`); `option` names it in the error. */
export function moduleUrl(option: string, specifier: unknown): string {
  if (specifier instanceof URL) return specifier.href
  if (typeof specifier !== 'string' || specifier.length === 0) {
    invalidOption(option, 'a module path or URL', specifier)
  }
  // A scheme, but not a Windows drive letter (C:\…).
  if (/^[a-z][a-z\d+.-]+:/i.test(specifier)) return specifier
  return pathToFileURL(resolve(specifier)).href
}

/** Imports the module and returns its default export, checked to be a transform factory. */
export async function loadTransform(url: string): Promise<TransformFactory> {
  const module = (await import(url)) as { default?: unknown }
  return checkTransformFactory(module.default, url)
}

/**
 * Imports a `fetchModule` and makes its fetch: the default export is a factory, called once per worker (or once
 * in-process), so each worker owns its connection pool. E.g. sluice/node's undici-based upstream fetch.
 */
export async function loadFetch(url: string): Promise<typeof fetch> {
  const module = (await import(url)) as { default?: unknown }
  if (typeof module.default !== 'function') {
    invalidOption('fetchModule', `a module whose default export makes a fetch (${url})`, module.default)
  }
  const made: unknown = (module.default as () => unknown)()
  if (typeof made !== 'function') invalidOption('fetchModule', `a factory returning a function (${url})`, made)
  return made as typeof fetch
}

/**
 * Fetch's status classes (https://fetch.spec.whatwg.org/#statuses), shared by the runtime-specific upstream
 * fetches (adapters/node/upstream-fetch.ts, adapters/deno/upstream-fetch.ts), which must answer like fetch does.
 * @module
 */

/** "redirect status": with `redirect: 'error'` and a Location header, a network error. */
export const REDIRECT_STATUSES: ReadonlySet<number> = new Set([301, 302, 303, 307, 308])

/** "null body status": the Response must have a null body. */
export const NULL_BODY_STATUSES: ReadonlySet<number> = new Set([101, 103, 204, 205, 304])

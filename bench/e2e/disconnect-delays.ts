/**
 * Disconnect mode's headline number: how long after a client leaves does the UPSTREAM see its connection close?
 * The client side records when it aborted (epoch ms, `sharedNow()`); the upstream (test/upstream/server.ts)
 * records `closedAt` per request on the same epoch clock and serves its records at
 * `GET <origin>/__upstream/requests`. Requests are matched by the `id` parameter of their model string, which every
 * gateway forwards untouched because it is part of the request body.
 * @module
 */
import type { ClientDisconnect } from './loadgen.ts'
import { assertLoopbackUrl } from './loopback.ts'
import { distribution } from './percentiles.ts'
import type { Distribution } from './percentiles.ts'

interface UpstreamRecord {
  id: string
  closedAt?: number
}

export interface DisconnectDelays extends Distribution {
  /** Aborted by the client but still open at the upstream when we stopped waiting: a leaked upstream stream. */
  neverClosed: number
}

/**
 * Joins client aborts with upstream close times. `idFor(index)` is the upstream id of request `index` (the model
 * string's `id`). Waits up to `settleMs` for the last closes to be recorded.
 */
export async function disconnectDelays(
  upstreamUrl: string,
  disconnects: readonly ClientDisconnect[],
  idFor: (index: number) => string,
  settleMs = 2_000,
): Promise<DisconnectDelays> {
  const recordsUrl = new URL('/__upstream/requests', assertLoopbackUrl(upstreamUrl).origin)
  const deadline = performance.now() + settleMs
  let closedAt = new Map<string, number>()
  for (;;) {
    const response = await fetch(recordsUrl)
    if (!response.ok) throw new Error(`${recordsUrl}: HTTP ${response.status}`)
    const records = (await response.json()) as UpstreamRecord[]
    closedAt = new Map(records.filter((r) => r.closedAt !== undefined).map((r) => [r.id, r.closedAt!]))
    const open = disconnects.filter((d) => !closedAt.has(idFor(d.index))).length
    if (open === 0 || performance.now() > deadline) break
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  const delays: number[] = []
  for (const d of disconnects) {
    const closed = closedAt.get(idFor(d.index))
    if (closed !== undefined) delays.push(closed - d.abortedAt)
  }
  return { ...distribution(delays), neverClosed: disconnects.length - delays.length }
}

/** The upstream id a model string carries (`mock?id=d7&chunks=50` → `d7`), or undefined. */
export function idFromModel(model: string): string | undefined {
  const query = model.indexOf('?')
  if (query === -1) return undefined
  return new URLSearchParams(model.slice(query + 1)).get('id') ?? undefined
}

/** Adds `id={i}`-style per-request ids to a model string that has none, so upstream records can be matched. */
export function withRequestIds(model: string, prefix = 'd'): string {
  if (model.includes('{i}')) return model
  return `${model}${model.includes('?') ? '&' : '?'}id=${prefix}{i}`
}

/**
 * The port the chunk channel runs over, typed structurally so a `node:worker_threads` MessagePort (Node, Bun and
 * Deno all have it) and a Web MessagePort both fit, and the one listener helper both hubs use.
 * @module
 */
import { isWireBatch, type WireBatch } from './chunk-channel-protocol.ts'

/** The subset of MessagePort the channel uses. */
export interface ChunkPort {
  postMessage(message: unknown, transfer: ArrayBuffer[]): void
  addEventListener(type: 'message' | 'close', listener: (event: Event) => void): void
  removeEventListener(type: 'message' | 'close', listener: (event: Event) => void): void
  /** Web ports deliver nothing until started (HTML spec: `addEventListener` does not start a port). */
  start?(): void
  /** Node/Deno: a port with a 'message' listener keeps the process alive until unref'd. */
  unref?(): void
}

/**
 * Calls `onBatch` for every message of this protocol on `port` (other messages are left to other listeners) and
 * `onClose` once the port is closed from either end — which is also what happens when the thread on the other
 * end dies: `terminate()` or an uncaught error fires 'close' on the surviving end on Node 20, Bun 1.4.5 and
 * Deno 2.9.6 (measured). Returns the disposer.
 *
 * The port is unref'd: a hub keeps its thread alive with `holdAlive()` only while a stream is open, so an idle hub
 * never pins the process (measured: Node and Deno stay alive on a listening port, Bun 1.4.5 does not even after
 * `ref()` — a timer is the one keep-alive that behaves the same everywhere).
 */
export function listenForBatches(
  port: ChunkPort,
  onBatch: (batch: WireBatch) => void,
  onClose: () => void,
): () => void {
  const onMessage = (event: Event): void => {
    const data: unknown = (event as MessageEvent).data
    if (isWireBatch(data)) onBatch(data)
  }
  port.addEventListener('message', onMessage)
  port.addEventListener('close', onClose)
  port.start?.()
  port.unref?.()
  return () => {
    port.removeEventListener('message', onMessage)
    port.removeEventListener('close', onClose)
  }
}

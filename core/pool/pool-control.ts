/**
 * Control messages of the pool (./pool-protocol.ts) on a port shared with the chunk channel: a per-turn batch
 * (one `postMessage` for everything said in one turn of the event loop, posted with `setImmediate` for the same
 * reasons as the chunk channel's FrameBatch) and the listener that picks them out of the port's traffic.
 * @module
 */
import { setImmediate } from 'node:timers'
import type { ChunkPort } from './chunk-channel-port.ts'
import { type ControlItem, type ControlMessage, isControlMessage, POOL_TAG } from './pool-protocol.ts'

export class ControlBatch {
  readonly #port: ChunkPort
  #items: ControlItem[] = []
  #scheduled = false
  #closed = false

  constructor(port: ChunkPort) {
    this.#port = port
  }

  post(item: ControlItem): void {
    if (this.#closed) return
    this.#items.push(item)
    if (this.#scheduled) return
    this.#scheduled = true
    setImmediate(this.#flush)
  }

  /**
   * Posts `item` with everything batched before it at once, in order: for news main must have even if this
   * thread dies before its next turn.
   */
  postNow(item: ControlItem): void {
    if (this.#closed) return
    this.#items.push(item)
    this.#flush()
  }

  /** Later items are dropped (the other side is gone). */
  close(): void {
    this.#closed = true
    this.#items = []
  }

  readonly #flush = (): void => {
    this.#scheduled = false
    if (this.#closed || this.#items.length === 0) return
    const message: ControlMessage = [POOL_TAG, this.#items]
    this.#items = []
    this.#port.postMessage(message, [])
  }
}

/**
 * Calls `onItems` for every control message on `port` and returns the disposer. Unref'd like the chunk channel's
 * listener: live calls keep their thread alive through the chunk hubs, an idle port never does.
 */
export function listenForControl(port: ChunkPort, onItems: (items: ControlItem[]) => void): () => void {
  const listener = (event: Event): void => {
    const data: unknown = (event as MessageEvent).data
    if (isControlMessage(data)) onItems(data[1])
  }
  port.addEventListener('message', listener)
  port.start?.()
  port.unref?.()
  return () => port.removeEventListener('message', listener)
}

/**
 * The baseline for the contended SharedSemaphore benchmark: a weighted FIFO semaphore arbitrated by the main
 * thread over postMessage, the way one would share a limit between workers without shared memory. Same
 * semantics as SharedSemaphore's queue (strict FIFO, weighted, no barging), kept lean so that it is a fair
 * rival: one MessagePort per worker, numbers as messages (no objects to clone), an array queue that stays short
 * (at most one entry per waiting acquire).
 *
 * Messages worker → main: `id * 2^20 + weight` to acquire (id ≥ 1), `-weight` to release. Main → worker: `id`.
 */
import type { MessagePort } from 'node:worker_threads'

const WEIGHT_SPAN = 2 ** 20

/** The arbiter, on the main thread. */
export class MessageSemaphoreBroker {
  #available: number
  readonly #queue: { port: MessagePort; id: number; weight: number }[] = []

  constructor(capacity: number) {
    this.#available = capacity
  }

  attach(port: MessagePort): void {
    port.on('message', (message: number) => {
      if (message < 0) {
        this.#available -= message
      } else {
        const weight = message % WEIGHT_SPAN
        this.#queue.push({ port, id: (message - weight) / WEIGHT_SPAN, weight })
      }
      this.#pump()
    })
  }

  #pump(): void {
    while (this.#queue.length > 0 && this.#queue[0]!.weight <= this.#available) {
      const head = this.#queue.shift()!
      this.#available -= head.weight
      head.port.postMessage(head.id)
    }
  }
}

/** A worker's handle on the broker. */
export class MessageSemaphoreClient {
  readonly #port: MessagePort
  readonly #pending = new Map<number, () => void>()
  #nextId = 1

  constructor(port: MessagePort) {
    this.#port = port
    port.on('message', (id: number) => {
      const resolve = this.#pending.get(id)!
      this.#pending.delete(id)
      resolve()
    })
  }

  acquire(weight = 1): Promise<{ release(): void }> {
    const id = this.#nextId++
    const port = this.#port
    return new Promise((resolve) => {
      this.#pending.set(id, () => resolve({ release: () => port.postMessage(-weight) }))
      port.postMessage(id * WEIGHT_SPAN + weight)
    })
  }
}

/**
 * The main thread's view of the pool's worker threads: one WorkerLink per live worker, made from its HELLO
 * (./pool-protocol.ts), and what happens when one exits or stops answering. piscina owns the threads (creates,
 * replaces and terminates them); this only listens.
 * @module
 */
import { setInterval } from 'node:timers'
import type { Worker } from 'node:worker_threads'
import type { Piscina } from 'piscina'
import type { SharedSemaphore } from '../semaphore.ts'
import type { ChunkLink, ChunkReaderHub } from './chunk-channel-reader-hub.ts'
import type { ChunkPort } from './chunk-channel-port.ts'
import { reasonToWire } from './chunk-channel-reason.ts'
import { ControlBatch, listenForControl } from './pool-control.ts'
import { PoolClosedError, WorkerCrashedError } from './pool-errors.ts'
import { type ControlItem, type HelloMessage, isHello, SHUTDOWN } from './pool-protocol.ts'

type ClosablePort = ChunkPort & { close?(): void }

/** One live worker: its port (chunk channel + control), owner ids and heartbeat. */
export class WorkerLink {
  readonly threadId: number
  readonly worker: Worker
  readonly chunkLink: ChunkLink
  readonly owners: readonly number[]
  failure: Error | undefined
  readonly #port: ClosablePort
  readonly #control: ControlBatch
  readonly #stopListening: () => void
  readonly #heartbeat: Int32Array
  #lastBeat = -1
  #lastChangeAt = performance.now()

  constructor(
    hello: HelloMessage,
    worker: Worker,
    hub: ChunkReaderHub,
    onItems: (link: WorkerLink, items: ControlItem[]) => void,
  ) {
    this.threadId = hello.threadId
    this.worker = worker
    this.owners = hello.owners
    this.#port = hello.port as ClosablePort
    this.#heartbeat = new Int32Array(hello.heartbeat)
    this.chunkLink = hub.attach(this.#port)
    this.#control = new ControlBatch(this.#port)
    this.#stopListening = listenForControl(this.#port, (items) => onItems(this, items))
  }

  shutdown(key: number, reason: unknown): void {
    this.#control.post([SHUTDOWN, key, reasonToWire(reason)])
  }

  /** True when the heartbeat has not moved for `stallMs` (checked at `now`). */
  stalled(now: number, stallMs: number): boolean {
    const beat = Atomics.load(this.#heartbeat, 0)
    if (beat !== this.#lastBeat) {
      this.#lastBeat = beat
      this.#lastChangeAt = now
      return false
    }
    return now - this.#lastChangeAt > stallMs
  }

  /** The worker is gone: fail its streams with `failure`, stop listening. */
  detach(failure: Error): void {
    this.failure ??= failure
    this.chunkLink.fail(this.failure)
    this.#stopListening()
    this.#control.close()
    this.#port.close?.()
  }
}

export interface WorkerRegistryOptions {
  /** The pool's semaphores, in the order of HELLO's `owners`. */
  semaphores: readonly (SharedSemaphore | undefined)[]
  stallTimeoutMs: number
  onItems(link: WorkerLink, items: ControlItem[]): void
  /** True while the pool has calls (the watchdog only acts then). */
  busy(): boolean
  /** True once the pool is closing (exits are expected then). */
  closing(): boolean
}

export class WorkerRegistry {
  readonly #piscina: Piscina
  readonly #hub: ChunkReaderHub
  readonly #options: WorkerRegistryOptions
  readonly #links = new Map<number, WorkerLink>()
  readonly #watchdog: ReturnType<typeof setInterval>

  constructor(piscina: Piscina, hub: ChunkReaderHub, options: WorkerRegistryOptions) {
    this.#piscina = piscina
    this.#hub = hub
    this.#options = options
    piscina.on('message', (message: unknown) => {
      if (isHello(message)) this.#hello(message)
    })
    // piscina emits 'error' for a worker that failed with no task running; unhandled it would throw.
    piscina.on('error', (error: unknown) => console.error('sluice: a pool worker failed while idle:', error))
    const tick = Math.min(1_000, Math.max(10, options.stallTimeoutMs / 4))
    this.#watchdog = setInterval(() => this.#check(), tick)
    this.#watchdog.unref()
  }

  get size(): number {
    return this.#links.size
  }

  /** Stops the watchdog (the pool is closing). */
  stop(): void {
    clearInterval(this.#watchdog)
  }

  #hello(hello: HelloMessage): void {
    const worker = this.#piscina.threads.find((thread) => thread.threadId === hello.threadId)
    if (worker === undefined) {
      // It exited before its HELLO was read: whatever it may have taken comes back now.
      this.#reclaim(hello.owners)
      ;(hello.port as ClosablePort).close?.()
      return
    }
    const link = new WorkerLink(hello, worker, this.#hub, this.#options.onItems)
    this.#links.set(link.threadId, link)
    worker.once('exit', (code) => this.#exited(link, code))
  }

  #exited(link: WorkerLink, code: number): void {
    this.#links.delete(link.threadId)
    const failure = this.#options.closing()
      ? new PoolClosedError('The worker pool closed before the call finished')
      : new WorkerCrashedError(`The worker thread running this call exited (code ${code})`)
    link.detach(failure)
    this.#reclaim(link.owners)
  }

  #reclaim(owners: readonly number[]): void {
    owners.forEach((owner, index) => {
      try {
        this.#options.semaphores[index]?.reclaim(owner)
      } catch (error) {
        console.error(`sluice: reclaiming owner ${owner} of a dead worker failed:`, error)
      }
    })
  }

  #check(): void {
    if (!this.#options.busy()) {
      // Keep the baselines fresh so a stall is measured from when there was work to do.
      const now = performance.now()
      for (const link of this.#links.values()) link.stalled(now, Number.POSITIVE_INFINITY)
      return
    }
    const now = performance.now()
    for (const link of this.#links.values()) {
      if (link.failure !== undefined || !link.stalled(now, this.#options.stallTimeoutMs)) continue
      const stall = this.#options.stallTimeoutMs
      link.failure = new WorkerCrashedError(
        `The worker thread running this call stopped answering for ${stall} ms and was terminated`,
      )
      void link.worker.terminate()
    }
  }
}

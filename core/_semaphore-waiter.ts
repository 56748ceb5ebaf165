/**
 * One pending `SharedSemaphore.acquire()`: enters the queue, waits for its owner's doorbell (see
 * _semaphore-doorbell.ts) or for a grant made in this very thread, and leaves the queue cleanly on timeout or
 * abort. While it is pending it holds the process alive (a pending waitAsync keeps no runtime alive).
 * @module
 */
import { onAbort } from './abort.ts'
import { TimeoutError } from './errors.ts'
import { holdAlive } from './keep-alive.ts'
import type { Doorbell, Parked } from './_semaphore-doorbell.ts'

/** How long to wait before retrying a section that found the lock busy beyond its budget. */
export const RETRY_MS = 1

/** What a waiter needs from its semaphore; `enter`, `leave` and `outcome` each run one locked section. */
export interface WaiterHost<P> {
  readonly doorbell: Doorbell
  /** This thread's parked waiters on the same buffer, by ticket, for grants made in this thread. */
  readonly local: Map<number, Parked>
  /** Takes the permits at once (returns the permit), enqueues (sets `ticket`, returns 'queued'), or fails. */
  enter(waiter: PendingAcquire<P>): P | 'queued' | 'busy' | Error
  /** Takes the ticket out of the queue, giving the permits back if a grant won the race; false when busy. */
  leave(waiter: PendingAcquire<P>): boolean
  /** After the slot word changed: the permit, or why there is none (the owner was reclaimed). */
  outcome(waiter: PendingAcquire<P>): P | Error
}

const PHASE_ENTERING = 0
const PHASE_PARKED = 1
const PHASE_LEAVING = 2
const PHASE_DONE = 3

// Waiters of this thread by buffer and ticket, so that a grant made in this thread settles them directly,
// without ringing a doorbell and the event-loop hop of its wake-up.
const waitersByBuffer = new WeakMap<SharedArrayBuffer, Map<number, Parked>>()

/** This thread's parked waiters on `buffer`, by ticket. */
export function localWaiters(buffer: SharedArrayBuffer): Map<number, Parked> {
  let waiters = waitersByBuffer.get(buffer)
  if (!waiters) waitersByBuffer.set(buffer, (waiters = new Map()))
  return waiters
}

export class PendingAcquire<P> implements Parked {
  readonly weight: number
  /** Set by `WaiterHost.enter` when it queues. */
  ticket = 0
  readonly promise: Promise<P>
  readonly #host: WaiterHost<P>
  #phase = PHASE_ENTERING
  #settled = false
  #resolve!: (permit: P) => void
  #reject!: (reason: unknown) => void
  #timer: ReturnType<typeof setTimeout> | undefined
  #retry: ReturnType<typeof setTimeout> | undefined
  #disposeAbort: () => void = noop
  readonly #releaseHold: () => void

  constructor(host: WaiterHost<P>, weight: number, signal: AbortSignal | undefined, timeoutMs: number | undefined) {
    this.#host = host
    this.weight = weight
    this.promise = new Promise<P>((resolve, reject) => {
      this.#resolve = resolve
      this.#reject = reject
    })
    this.#releaseHold = holdAlive()
    if (timeoutMs !== undefined) {
      this.#timer = setTimeout(() => {
        const message = `Timed out after ${timeoutMs} ms waiting for ${weight} semaphore permit(s)`
        this.#fail(new TimeoutError(message, timeoutMs))
      }, timeoutMs)
    }
    this.#disposeAbort = onAbort(signal, (reason) => this.#fail(reason))
    if (!this.#settled) this.#enter()
  }

  /** The ticket was granted or cancelled by someone else (or not: then nothing happens). */
  changed(): void {
    if (this.#phase !== PHASE_PARKED || !this.#host.doorbell.hasChanged(this.ticket)) return
    this.#done()
    const outcome = this.#host.outcome(this)
    if (outcome instanceof Error) {
      this.#fail(outcome)
      return
    }
    this.#settle()
    this.#resolve(outcome)
  }

  #enter(): void {
    this.#retry = undefined
    const result = this.#host.enter(this)
    if (result === 'busy') {
      this.#retry = setTimeout(() => this.#enter(), RETRY_MS)
    } else if (result === 'queued') {
      this.#phase = PHASE_PARKED
      this.#host.local.set(this.ticket, this)
      this.#host.doorbell.park(this)
    } else if (result instanceof Error) {
      this.#fail(result)
    } else {
      this.#phase = PHASE_DONE
      this.#releaseHold()
      this.#settle()
      this.#resolve(result)
    }
  }

  #fail(reason: unknown): void {
    if (this.#settled) return
    this.#settle()
    this.#reject(reason)
    if (this.#phase === PHASE_PARKED) {
      this.#phase = PHASE_LEAVING
      this.#leave()
    } else if (this.#phase === PHASE_ENTERING) {
      if (this.#retry !== undefined) clearTimeout(this.#retry)
      this.#phase = PHASE_DONE
      this.#releaseHold()
    }
  }

  #leave(): void {
    if (!this.#host.leave(this)) {
      this.#retry = setTimeout(() => this.#leave(), RETRY_MS)
      return
    }
    this.#done()
  }

  #settle(): void {
    this.#settled = true
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#disposeAbort()
  }

  #done(): void {
    this.#phase = PHASE_DONE
    this.#host.local.delete(this.ticket)
    this.#host.doorbell.unpark(this.ticket)
    this.#releaseHold()
  }
}

function noop(): void {}

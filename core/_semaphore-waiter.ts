/**
 * One pending `SharedSemaphore.acquire()`: enters the queue, parks on its own slot with Atomics.waitAsync,
 * and leaves the queue cleanly on timeout or abort.
 *
 * Wait protocol: the waiter parks with `Atomics.waitAsync(slotState, slotWord(ticket, SLOT_WAITING))`. The engine
 * compares and enqueues atomically with respect to `Atomics.notify`, so a grant that lands before the park makes
 * the wait return 'not-equal' at once: no lost wake-up. Only a grant (which moved the permits to this owner
 * first), a reclaim of this owner, or this waiter's own cancellation changes that word; a wake-up that finds the
 * word unchanged (the slot's previous ticket being cancelled, say) parks again. A cancelling waiter notifies its
 * own slot afterwards, so that its abandoned waitAsync settles instead of lingering in the engine's waiter list.
 *
 * While anything is pending, a keep-alive hold is taken (a pending waitAsync keeps no runtime alive).
 * @module
 */
import { onAbort } from './abort.ts'
import { TimeoutError } from './errors.ts'
import { holdAlive } from './keep-alive.ts'
import { kSlotState, SLOT_WAITING, slotWord } from './_semaphore-layout.ts'
import type { Layout } from './_semaphore-layout.ts'

/** How long to wait before retrying a section that found the lock busy beyond its budget. */
export const RETRY_MS = 1

/** What a waiter needs from its semaphore; every method runs one locked section. */
export interface WaiterHost<P> {
  readonly layout: Layout
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

// Waiters of this thread by buffer and ticket, so that a grant made in this thread resolves them directly,
// without the event-loop hop of a waitAsync wake-up (the notify still follows, to settle that waitAsync).
const waitersByBuffer = new WeakMap<SharedArrayBuffer, Map<number, PendingAcquire<unknown>>>()

/** This thread's parked waiters on `buffer`, by ticket. */
export function localWaiters(buffer: SharedArrayBuffer): Map<number, PendingAcquire<unknown>> {
  let waiters = waitersByBuffer.get(buffer)
  if (!waiters) waitersByBuffer.set(buffer, (waiters = new Map()))
  return waiters
}

export class PendingAcquire<P> {
  readonly weight: number
  /** Set by `WaiterHost.enter` when it queues. */
  ticket = 0
  readonly promise: Promise<P>
  readonly #host: WaiterHost<P>
  readonly #waiters: Map<number, PendingAcquire<unknown>>
  #phase = PHASE_ENTERING
  #settled = false
  #resolve!: (permit: P) => void
  #reject!: (reason: unknown) => void
  #timer: ReturnType<typeof setTimeout> | undefined
  #retry: ReturnType<typeof setTimeout> | undefined
  #disposeAbort: () => void = noop
  #releaseHold: () => void

  constructor(host: WaiterHost<P>, weight: number, signal: AbortSignal | undefined, timeoutMs: number | undefined) {
    this.#host = host
    this.weight = weight
    this.#waiters = localWaiters(host.layout.i32.buffer as SharedArrayBuffer)
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

  /** A section in this thread granted or cancelled this ticket: settle now rather than after the wake-up. */
  changed(): void {
    this.#wake()
  }

  readonly #enter = (): void => {
    this.#retry = undefined
    const result = this.#host.enter(this)
    if (result === 'busy') {
      this.#retry = setTimeout(this.#enter, RETRY_MS)
    } else if (result === 'queued') {
      this.#phase = PHASE_PARKED
      this.#waiters.set(this.ticket, this as PendingAcquire<unknown>)
      this.#park()
    } else {
      this.#phase = PHASE_DONE
      this.#succeed(result)
      this.#releaseHold()
    }
  }

  #park(): void {
    const i32 = this.#host.layout.i32
    const result = Atomics.waitAsync(i32, this.#slot(), slotWord(this.ticket, SLOT_WAITING))
    if (result.async) void result.value.then(this.#wake)
    else this.#wake()
  }

  readonly #wake = (): void => {
    if (this.#phase !== PHASE_PARKED) return
    if (Atomics.load(this.#host.layout.i32, this.#slot()) === slotWord(this.ticket, SLOT_WAITING)) {
      this.#park()
      return
    }
    this.#done()
    this.#succeed(this.#host.outcome(this))
  }

  #succeed(outcome: P | Error): void {
    if (outcome instanceof Error) {
      this.#fail(outcome)
      return
    }
    this.#settle()
    this.#resolve(outcome)
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

  readonly #leave = (): void => {
    if (!this.#host.leave(this)) {
      this.#retry = setTimeout(this.#leave, RETRY_MS)
      return
    }
    this.#done()
    // Settles this waiter's own abandoned waitAsync (anyone else woken re-checks their word and parks again).
    Atomics.notify(this.#host.layout.i32, this.#slot())
  }

  #settle(): void {
    this.#settled = true
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#disposeAbort()
  }

  #done(): void {
    this.#phase = PHASE_DONE
    this.#waiters.delete(this.ticket)
    this.#releaseHold()
  }

  #slot(): number {
    return this.#host.layout.slot(this.ticket) + kSlotState
  }
}

function noop(): void {}

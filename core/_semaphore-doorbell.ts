/**
 * How a thread learns that its queued tickets were granted: one doorbell word per owner, one armed
 * Atomics.waitAsync per owner, whatever the number of waiters.
 *
 * One waitAsync per waiter (parking on the ticket's own slot) cost ~80 % of a contended grant in a profile
 * (the call, the notify that must settle it even when the grant was made in the same thread, and the GC
 * churn they cause): 10 000 queued streams would be 10 000 pending waitAsync promises.
 *
 * Protocol. A section that granted or cancelled a ticket commits first, then rings the ticket owner's doorbell:
 * Atomics.add(kOwnerDoorbell, 1) and Atomics.notify on it (all waiters: an abandoned wait cannot swallow it).
 * The owner's side reads the doorbell, then checks its parked waiters' slot words, then waits with
 * waitAsync(doorbell, valueRead): a ring after the read makes the wait return 'not-equal' at once, and a ring
 * before it is seen by the check. No lost wake-up. Grants are strict FIFO across all threads, so the check walks
 * the parked tickets in ticket order and stops at the first whose word still says waiting: O(tickets settled).
 * @module
 */
import { kOwnerDoorbell, kSlotState, SLOT_WAITING, slotWord } from './_semaphore-layout.ts'
import type { Layout } from './_semaphore-layout.ts'

/** What the doorbell needs from a parked waiter. */
export interface Parked {
  readonly ticket: number
  /** Settle if the ticket's slot word changed (granted, or cancelled by a reclaim). */
  changed(): void
}

/** Rings `owner`'s doorbell: call after committing a section that granted or cancelled one of its tickets. */
export function ring(layout: Layout, owner: number): void {
  const index = layout.owner(owner, kOwnerDoorbell)
  Atomics.add(layout.i32, index, 1)
  Atomics.notify(layout.i32, index)
}

/** The listening side, one per SharedSemaphore instance (owner). */
export class Doorbell {
  readonly #layout: Layout
  readonly #index: number
  /** Parked waiters in ticket order (a Map iterates in insertion order, and tickets are taken in order). */
  readonly #parked = new Map<number, Parked>()
  #armed = false

  constructor(layout: Layout, owner: number) {
    this.#layout = layout
    this.#index = layout.owner(owner, kOwnerDoorbell)
  }

  park(waiter: Parked): void {
    this.#parked.set(waiter.ticket, waiter)
    this.#listen()
  }

  unpark(ticket: number): void {
    this.#parked.delete(ticket)
  }

  /** Whether `ticket`'s slot word no longer says it waits. */
  hasChanged(ticket: number): boolean {
    return Atomics.load(this.#layout.i32, this.#layout.slot(ticket) + kSlotState) !== slotWord(ticket, SLOT_WAITING)
  }

  #listen(): void {
    // Armed already: that wait is still pending and wakes on the next ring. When nobody is parked any more it
    // stays pending until then, harmlessly: a pending waitAsync keeps no runtime alive (the waiters hold that).
    if (this.#armed) return
    const i32 = this.#layout.i32
    // Read the doorbell, check, then wait for it to move from what was read (the protocol above).
    for (;;) {
      const rung = Atomics.load(i32, this.#index)
      this.#check()
      if (this.#parked.size === 0) return
      const wait = Atomics.waitAsync(i32, this.#index, rung)
      if (!wait.async) continue
      this.#armed = true
      void wait.value.then(() => {
        this.#armed = false
        this.#listen()
      })
      return
    }
  }

  #check(): void {
    // Deleting the current entry while iterating a Map is safe: iteration goes on with the next one.
    for (const waiter of this.#parked.values()) {
      if (!this.hasChanged(waiter.ticket)) return
      waiter.changed()
    }
  }
}

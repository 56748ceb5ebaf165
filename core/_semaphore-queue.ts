/**
 * The ticket queue of SharedSemaphore, as operations inside a locked Section (see _semaphore-section.ts).
 *
 * Tickets are handed out in order (kTail) and served in order (kHead): strict FIFO across threads, with
 * head-of-line blocking by a heavy head as the accepted trade-off (as in async-mutex). Each ticket has its own
 * slot in a ring, whose state word its waiter checks: a wake-up (see _semaphore-doorbell.ts) settles exactly the
 * tickets whose word changed. Granting moves the permits to the waiter's owner *before* marking the slot
 * granted (both in one section), so a woken waiter never has to race for permits.
 * @module
 */
import {
  kHead,
  kOwnerGranted,
  kOwnerStatus,
  kSlotState,
  kSlotWho,
  kTail,
  kWaiting,
  OWNER_DEAD,
  SLOT_CANCELLED,
  SLOT_GRANTED,
  SLOT_WAITING,
  slotWord,
  WEIGHT_MASK,
  whoOwner,
  whoWord,
} from './_semaphore-layout.ts'
import type { Layout } from './_semaphore-layout.ts'
import type { Section } from './_semaphore-section.ts'

/** Appends a ticket. Returns it, or undefined when `maxWaiting` live tickets wait or the ring is full. */
export function enqueue(section: Section, layout: Layout, weight: number, owner: number): number | undefined {
  const head = section.read(kHead)
  const tail = section.read(kTail)
  const waiting = section.read(kWaiting)
  if (waiting >= layout.maxWaiting || ((tail - head) | 0) >= layout.ringSize) return undefined
  const slot = layout.slot(tail)
  section.write(slot + kSlotWho, whoWord(weight, owner))
  section.write(slot + kSlotState, slotWord(tail, SLOT_WAITING))
  section.write(kTail, (tail + 1) | 0)
  section.write(kWaiting, waiting + 1)
  section.queued = true
  return tail
}

/**
 * Serves the head of the queue while it fits in the free permits: skips cancelled tickets, cancels tickets of
 * dead owners, grants the rest in order. Appends each ticket it granted or cancelled, and its owner, to `woken`
 * (flat pairs): wake them after the commit. Stops at the first waiting ticket that does not fit (strict FIFO).
 * Returns true if it stopped only because the section's redo log is full: run another section to continue.
 */
export function grantHeads(section: Section, layout: Layout, woken: number[]): boolean {
  let head = section.read(kHead)
  const tail = section.read(kTail)
  let waiting = section.read(kWaiting)
  let full = false
  while (head !== tail) {
    // A grant stages up to 2 entries; kHead and kWaiting need 2 more at the end.
    if (section.room < 4) {
      full = true
      break
    }
    const slot = layout.slot(head)
    // section.read, not Atomics.load: this section may have cancelled the ticket already.
    if (section.read(slot + kSlotState) === slotWord(head, SLOT_WAITING)) {
      const who = section.read(slot + kSlotWho)
      const owner = whoOwner(who)
      const weight = who & WEIGHT_MASK
      if (Atomics.load(layout.i32, layout.owner(owner, kOwnerStatus)) === OWNER_DEAD) {
        section.write(slot + kSlotState, slotWord(head, SLOT_CANCELLED))
      } else {
        if (weight > section.avail) break
        section.avail -= weight
        const ledger = layout.owner(owner, kOwnerGranted)
        section.write(ledger, section.read(ledger) + weight)
        section.write(slot + kSlotState, slotWord(head, SLOT_GRANTED))
      }
      woken.push(head, owner)
      waiting--
    }
    head = (head + 1) | 0
  }
  section.write(kHead, head)
  section.write(kWaiting, waiting)
  section.queued = head !== tail
  return full
}

/** Outcome of cancelling a ticket. */
export type CancelOutcome = 'cancelled' | 'granted' | 'gone'

/**
 * Cancels `ticket` if it still waits. 'granted': a grant won the race (the permits are the owner's now).
 * 'gone': someone else cancelled it (a reclaim of its owner).
 */
export function cancelTicket(section: Section, layout: Layout, ticket: number): CancelOutcome {
  const slot = layout.slot(ticket) + kSlotState
  const word = section.read(slot)
  if (word === slotWord(ticket, SLOT_CANCELLED)) return 'gone'
  if (word !== slotWord(ticket, SLOT_WAITING)) return 'granted'
  section.write(slot, slotWord(ticket, SLOT_CANCELLED))
  section.write(kWaiting, section.read(kWaiting) - 1)
  return 'cancelled'
}

/**
 * Cancels waiting tickets of `owner` from ticket `from` (clamped to the head) towards `to`, as many as the
 * section's log allows, appending them (ticket, owner) to `woken`. Returns the ticket to continue from: done
 * once it is not before `to`. Tickets handed out after the owner was marked dead cannot be its own, so `to` is
 * the tail read at that moment.
 */
export function cancelOwnerTickets(
  section: Section,
  layout: Layout,
  owner: number,
  range: { from: number; to: number },
  woken: number[],
): number {
  const { from, to } = range
  const head = section.read(kHead)
  let ticket = ((from - head) | 0) < 0 ? head : from
  let waiting = section.read(kWaiting)
  while (((to - ticket) | 0) > 0 && section.room > 2) {
    const slot = layout.slot(ticket)
    if (
      section.read(slot + kSlotState) === slotWord(ticket, SLOT_WAITING) &&
      whoOwner(section.read(slot + kSlotWho)) === owner
    ) {
      section.write(slot + kSlotState, slotWord(ticket, SLOT_CANCELLED))
      woken.push(ticket, owner)
      waiting--
    }
    ticket = (ticket + 1) | 0
  }
  section.write(kWaiting, waiting)
  return ticket
}

/**
 * Shared-memory layout of SharedSemaphore: one Int32Array over one SharedArrayBuffer, so `postMessage(handle)`
 * shares everything. Config words are written once, before the buffer is shared (postMessage orders those
 * writes before any read in the receiving thread), so they are read without Atomics; every other word is only
 * touched with Atomics.
 *
 * ```
 * [ header 16 words | redo log 2×LOG_CAPACITY | owners OWNER_WORDS×maxOwners | ring SLOT_WORDS×ringSize ]
 * ```
 * @module
 */

/** 'SEM1': `from()` rejects some other SharedArrayBuffer. */
export const LAYOUT_MAGIC = 0x53454d31

// Header words.
/** Free permits | QUEUED | MARK (the section lock): see the bit constants below. */
export const kState = 0
export const kCapacity = 1
/** Ticket of the oldest ticket not yet granted or skipped. */
export const kHead = 2
/** Next ticket to hand out. */
export const kTail = 3
/** Live (not cancelled, not granted) tickets between head and tail. */
export const kWaiting = 4
/** Number of committed redo-log entries; 0 when no section is being applied. */
export const kLogCount = 5
export const kMagic = 6
export const kMaxOwners = 7
export const kRingSize = 8
export const kMaxWaiting = 9
/** Threads sleeping in Atomics.wait on kState for the section lock: an unlock notifies them when > 0. */
export const kLockSleepers = 10
const HEADER_WORDS = 16

/** Redo-log entries a section may stage (index, value pairs). */
export const LOG_CAPACITY = 64
export const kLogBase = HEADER_WORDS
const OWNERS_BASE = kLogBase + 2 * LOG_CAPACITY

// Per-owner record: a ledger of what the owner holds, split in two words so that each has one writer per moment.
/** Permits this owner took or gave back itself (may go negative: it also releases permits granted to it). */
export const kOwnerHeld = 0
/** Permits other threads' grants handed to this owner's tickets. Held = kOwnerHeld + kOwnerGranted. */
export const kOwnerGranted = 1
/** What kOwnerHeld will be once this owner's current section completes (written before the lock is taken). */
export const kOwnerIntent = 2
/** OWNER_FREE → OWNER_LIVE (from) → OWNER_DEAD (reclaim) → OWNER_FREE (reclaim done). CAS only, never locked. */
export const kOwnerStatus = 3
/** Bumped by each reclaim, so a stale instance notices that its owner id was taken away. */
export const kOwnerGeneration = 4
/** Rung (incremented, then notified) after a section granted or cancelled one of this owner's tickets. */
export const kOwnerDoorbell = 5
const OWNER_WORDS = 6
export const OWNER_FREE = 0
export const OWNER_LIVE = 1
export const OWNER_DEAD = 2

// Ring slot: one per ticket modulo ringSize. Its kSlotState word says whether the ticket still waits.
export const kSlotState = 0
/** weight | owner << WHO_OWNER_SHIFT */
export const kSlotWho = 1
const SLOT_WORDS = 2
export const SLOT_WAITING = 1
export const SLOT_CANCELLED = 2
export const SLOT_GRANTED = 3

// kState bits. 20 bits of permits, 1 flag, 10 bits of mark: bit 31 stays clear, so the word is never negative.
export const AVAIL_MASK = 0xfffff
export const MAX_CAPACITY = AVAIL_MASK
/** Some ticket is waiting: the fast path must not barge past it. */
export const QUEUED = 1 << 20
const MARK_SHIFT = 21
export const MARK_MASK = 0x3ff << MARK_SHIFT
/** Marks are owner + 1 in 10 bits: owner ids 0…1022. */
export const MAX_OWNERS = 0x3ff
export const WEIGHT_MASK = AVAIL_MASK
const WHO_OWNER_SHIFT = 20

/** The kState mark of `owner` (0 means unlocked). */
export function markOf(owner: number): number {
  return (owner + 1) << MARK_SHIFT
}

/** The owner whose mark is in `state`, or -1 when unlocked. */
export function markOwner(state: number): number {
  return ((state & MARK_MASK) >>> MARK_SHIFT) - 1
}

/**
 * A slot's state word carries its ticket, so a reused slot never looks like the same wait: a waiter parked on
 * `slotWord(t, SLOT_WAITING)` is woken by any change, and any other value means its ticket left the queue.
 */
export function slotWord(ticket: number, state: number): number {
  return (ticket << 2) | state
}

export function whoWord(weight: number, owner: number): number {
  return weight | (owner << WHO_OWNER_SHIFT)
}

export function whoOwner(who: number): number {
  return who >>> WHO_OWNER_SHIFT
}

/** Word offsets of one semaphore's buffer. */
export class Layout {
  readonly i32: Int32Array
  readonly capacity: number
  readonly maxOwners: number
  readonly maxWaiting: number
  readonly ringSize: number
  readonly #ringMask: number
  readonly #ringBase: number

  constructor(i32: Int32Array) {
    this.i32 = i32
    this.capacity = i32[kCapacity]!
    this.maxOwners = i32[kMaxOwners]!
    this.maxWaiting = i32[kMaxWaiting]!
    this.ringSize = i32[kRingSize]!
    this.#ringMask = this.ringSize - 1
    this.#ringBase = OWNERS_BASE + OWNER_WORDS * this.maxOwners
  }

  /** Index of `field` (a kOwner* constant) of `owner`'s record. */
  owner(owner: number, field: number): number {
    return OWNERS_BASE + owner * OWNER_WORDS + field
  }

  /** Index of the state word of the slot that `ticket` uses; the who word follows it. */
  slot(ticket: number): number {
    return this.#ringBase + (ticket & this.#ringMask) * SLOT_WORDS
  }
}

/**
 * Allocates and initialises a buffer. The ring holds twice `maxWaiting` tickets (rounded up to a power of two):
 * cancelled tickets keep their slot until the head passes them, so a stuck heavy head with many timed-out
 * waiters behind it does not make the queue look full long before `maxWaiting` live waiters.
 */
export function createLayout(capacity: number, maxOwners: number, maxWaiting: number): Layout {
  const ringSize = 2 ** Math.ceil(Math.log2(2 * maxWaiting))
  const words = OWNERS_BASE + OWNER_WORDS * maxOwners + SLOT_WORDS * ringSize
  const i32 = new Int32Array(new SharedArrayBuffer(words * 4))
  i32[kState] = capacity
  i32[kCapacity] = capacity
  i32[kMaxOwners] = maxOwners
  i32[kMaxWaiting] = maxWaiting
  i32[kRingSize] = ringSize
  i32[kMagic] = LAYOUT_MAGIC
  return new Layout(i32)
}

/** The layout of a buffer made by `createLayout`, or undefined for any other buffer. */
export function readLayout(buffer: unknown): Layout | undefined {
  if (!(buffer instanceof SharedArrayBuffer) || buffer.byteLength < OWNERS_BASE * 4) return undefined
  const i32 = new Int32Array(buffer)
  if (i32[kMagic] !== LAYOUT_MAGIC) return undefined
  return new Layout(i32)
}

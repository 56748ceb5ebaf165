/**
 * Crash-atomic critical sections over a semaphore's shared words: the only code that writes them.
 *
 * Protocol (every mutation follows it; a thread may be terminated between any two instructions):
 *
 * 1. The kState word holds the free permits, the QUEUED flag and a MARK = owner id + 1 of the thread inside a
 *    section (0 = none). Setting the mark is the lock. It is one CAS on the same word as the permits, so the
 *    fast path takes (or returns) permits, takes the lock and records who did it in one step.
 * 2. Before that CAS the owner stores its kOwnerIntent = the value its kOwnerHeld will have after the section.
 *    kOwnerHeld and kOwnerIntent are written only by their owner (or by a reclaim once the owner is dead).
 * 3. Fast path (nobody queued, nobody locked): CAS permits∓w + mark, store kOwnerHeld, store kState unmarked.
 * 4. Slow path: CAS mark only, stage writes in memory (read-your-writes), then write them as a redo log of
 *    (index, absolute value) pairs, store kLogCount = n (the commit point), apply them, store kLogCount = 0,
 *    store kState unmarked. The staged kState keeps the mark, so applying it does not unlock.
 * 5. Recovery, by whoever finds the lock held by an owner whose status is OWNER_DEAD: take the lock over by CAS
 *    (one recoverer), then if kLogCount > 0 re-apply the log (absolute values: idempotent, and nobody else
 *    wrote since), else store the dead owner's kOwnerHeld = its kOwnerIntent. Both leave the words exactly as
 *    if the dead section had completed or had never started: there is no window in which a crash loses or
 *    duplicates permits. A recoverer that dies mid-recovery leaves the same log for the next one.
 *
 * The lock is never held across an await. The longest section is a batch of grants bounded by LOG_CAPACITY
 * (a few µs). Waiting for it: spin for up to SPIN_MS (a section is shorter than that unless its thread was
 * descheduled), then sleep in Atomics.wait on kState. Sleep protocol: a sleeper counts itself in
 * kLockSleepers, re-checks, and waits on the kState value it saw; every unlock stores kState first and then
 * notifies if kLockSleepers > 0. Both sides are seq-cst, so either the unlocker sees the count or the sleeper's
 * wait sees the new kState ('not-equal'): no lost wake-up. Slices are bounded (a dead holder never unlocks)
 * and the whole wait gives up after a budget so that the caller can retry asynchronously: the thread that
 * must run a reclaim (usually the main thread, on a Worker 'exit' event) must get back to its event loop.
 * @module
 */
import { monotonicNow } from './clock.ts'
import {
  AVAIL_MASK,
  kLogBase,
  kLockSleepers,
  kLogCount,
  kOwnerHeld,
  kOwnerIntent,
  kOwnerStatus,
  kState,
  LOG_CAPACITY,
  MARK_MASK,
  markOf,
  markOwner,
  OWNER_DEAD,
  QUEUED,
} from './_semaphore-layout.ts'
import type { Layout } from './_semaphore-layout.ts'

/** Result of the fast path. */
export const FAST_DONE = 0
/** Definitive for the fast path: a ticket is queued, or too few permits are free. */
export const FAST_REFUSED = 1
/** A section is running elsewhere: take the slow path. */
export const FAST_BUSY = 2

const SPIN_MS = 0.01
const SLEEP_SLICE_MS = 1
const CAS_RETRIES = 16

// Atomics.wait throws where a thread may not block (a browser main thread); there we can only spin.
let canBlock = true

export class Section {
  /** Free permits as this section will leave them (valid between lock and commit). */
  avail = 0
  /** Whether a ticket waits after this section (valid between lock and commit). */
  queued = false
  readonly #layout: Layout
  readonly #i32: Int32Array
  readonly #mark: number
  readonly #heldIndex: number
  readonly #intentIndex: number
  readonly #indices = new Int32Array(LOG_CAPACITY)
  readonly #values = new Int32Array(LOG_CAPACITY)
  #staged = 0

  constructor(layout: Layout, owner: number) {
    this.#layout = layout
    this.#i32 = layout.i32
    this.#mark = markOf(owner)
    this.#heldIndex = layout.owner(owner, kOwnerHeld)
    this.#intentIndex = layout.owner(owner, kOwnerIntent)
  }

  /**
   * Fast path (protocol step 3): moves `delta` permits into the pool (negative: takes them) and records the
   * opposite in this owner's ledger, when nobody is queued and nobody holds the lock.
   *
   * kOwnerIntent and kOwnerHeld are written with plain (non-atomic) stores here: a seq-cst Atomics.store costs
   * an `xchg` on x86 and these two made the uncontended acquire+release ~30 % slower. It is safe: the intent is
   * ordered before the CAS, and held before the unlocking store, so anyone who later takes the lock (and so
   * reads from that CAS or store) sees them; the one racing write, a recoverer's kOwnerHeld = kOwnerIntent
   * after this thread died, writes the same value this thread wrote.
   */
  adjust(delta: number): number {
    const i32 = this.#i32
    for (let attempt = 0; attempt < CAS_RETRIES; attempt++) {
      const state = Atomics.load(i32, kState)
      if ((state & QUEUED) !== 0) return FAST_REFUSED
      if ((state & MARK_MASK) !== 0) return FAST_BUSY
      if ((state & AVAIL_MASK) + delta < 0) return FAST_REFUSED
      const held = i32[this.#heldIndex]! - delta
      i32[this.#intentIndex] = held
      if (Atomics.compareExchange(i32, kState, state, (state + delta) | this.#mark) === state) {
        i32[this.#heldIndex] = held
        this.#unlock(state + delta)
        return FAST_DONE
      }
    }
    return FAST_BUSY
  }

  /**
   * Takes the lock for a slow section (protocol step 4), recovering a dead holder on the way (step 5).
   * Returns false if it stayed busy for `budgetMs`: nothing was changed, retry later.
   */
  lock(budgetMs: number): boolean {
    const i32 = this.#i32
    Atomics.store(i32, this.#intentIndex, Atomics.load(i32, this.#heldIndex))
    let spins = 0
    let started = 0
    for (;;) {
      const state = Atomics.load(i32, kState)
      if ((state & MARK_MASK) === 0) {
        if (Atomics.compareExchange(i32, kState, state, state | this.#mark) === state) return this.#begin(state)
        continue
      }
      const holder = markOwner(state)
      if (Atomics.load(i32, this.#layout.owner(holder, kOwnerStatus)) === OWNER_DEAD) {
        if (Atomics.compareExchange(i32, kState, state, (state & ~MARK_MASK) | this.#mark) === state) {
          return this.#begin(this.#recover(holder))
        }
        continue
      }
      // Reading the clock costs more than a spin: look at it every 32 spins only.
      if ((++spins & 31) !== 0) continue
      const now = monotonicNow()
      if (started === 0) started = now
      const waited = now - started
      if (waited >= budgetMs) return false
      if (waited >= SPIN_MS && canBlock) this.#sleep(state, Math.min(SLEEP_SLICE_MS, budgetMs - waited))
    }
  }

  #sleep(state: number, ms: number): void {
    const i32 = this.#i32
    Atomics.add(i32, kLockSleepers, 1)
    try {
      if (Atomics.load(i32, kState) === state) Atomics.wait(i32, kState, state, ms)
    } catch {
      canBlock = false
    } finally {
      Atomics.sub(i32, kLockSleepers, 1)
    }
  }

  /** Every unlock ends here: publish kState, then wake lock sleepers (see the sleep protocol above). */
  #unlock(state: number): void {
    Atomics.store(this.#i32, kState, state)
    if (Atomics.load(this.#i32, kLockSleepers) > 0) Atomics.notify(this.#i32, kState)
  }

  /** The value of shared word `index` as this section will leave it. */
  read(index: number): number {
    for (let k = this.#staged - 1; k >= 0; k--) {
      if (this.#indices[k] === index) return this.#values[k]!
    }
    return Atomics.load(this.#i32, index)
  }

  /** Stages a write; nothing is visible to other threads before `commit()`. */
  write(index: number, value: number): void {
    for (let k = this.#staged - 1; k >= 0; k--) {
      if (this.#indices[k] === index) {
        this.#values[k] = value
        return
      }
    }
    // One entry stays reserved for kState (commit).
    if (this.#staged >= LOG_CAPACITY - 1) throw new Error('sluice: semaphore section overflowed its redo log')
    this.#indices[this.#staged] = index
    this.#values[this.#staged++] = value
  }

  /** Entries that can still be staged. */
  get room(): number {
    return LOG_CAPACITY - 1 - this.#staged
  }

  /** Stages this owner's own ledger (and its intent, so that a crash after applying keeps it). */
  setHeld(value: number): void {
    this.write(this.#heldIndex, value)
    this.write(this.#intentIndex, value)
  }

  get held(): number {
    return this.read(this.#heldIndex)
  }

  /** Publishes the staged writes atomically with respect to crashes, then unlocks. */
  commit(): void {
    const i32 = this.#i32
    const unlocked = this.avail | (this.queued ? QUEUED : 0)
    this.write(kState, unlocked | this.#mark)
    const count = this.#staged
    for (let k = 0; k < count; k++) {
      Atomics.store(i32, kLogBase + 2 * k, this.#indices[k]!)
      Atomics.store(i32, kLogBase + 2 * k + 1, this.#values[k]!)
    }
    Atomics.store(i32, kLogCount, count)
    for (let k = 0; k < count; k++) Atomics.store(i32, this.#indices[k]!, this.#values[k]!)
    Atomics.store(i32, kLogCount, 0)
    this.#staged = 0
    this.#unlock(unlocked)
  }

  /** Unlocks without publishing anything (the section decided not to change state). */
  unlock(): void {
    this.#staged = 0
    this.#unlock(Atomics.load(this.#i32, kState) & ~MARK_MASK)
  }

  #begin(state: number): true {
    this.#staged = 0
    this.avail = state & AVAIL_MASK
    this.queued = (state & QUEUED) !== 0
    return true
  }

  /** Protocol step 5, with the lock already taken over from `dead`. Returns kState as recovery left it. */
  #recover(dead: number): number {
    const i32 = this.#i32
    const count = Atomics.load(i32, kLogCount)
    if (count > 0) {
      for (let k = 0; k < count; k++) {
        Atomics.store(i32, Atomics.load(i32, kLogBase + 2 * k), Atomics.load(i32, kLogBase + 2 * k + 1))
      }
      Atomics.store(i32, kLogCount, 0)
    } else {
      const layout = this.#layout
      Atomics.store(i32, layout.owner(dead, kOwnerHeld), Atomics.load(i32, layout.owner(dead, kOwnerIntent)))
    }
    // The re-applied kState carries the dead owner's mark: put ours back.
    const state = (Atomics.load(i32, kState) & ~MARK_MASK) | this.#mark
    Atomics.store(i32, kState, state)
    return state
  }
}

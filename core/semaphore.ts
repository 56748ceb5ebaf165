/**
 * SharedSemaphore: a weighted counting semaphore in a SharedArrayBuffer, shared by every thread that gets its
 * `handle`. Strict FIFO across threads (a ticket queue; no barging past queued waiters), atomic weighted
 * acquire, timeouts and AbortSignal, and exact recovery of what a crashed thread held.
 *
 * How it works (details in the private siblings):
 * - `_semaphore-section.ts`: every change is a tiny crash-atomic critical section. The fast path, when nobody is
 *   queued, is one CAS that takes the permits, locks and records the taker at once, then two stores.
 * - `_semaphore-queue.ts`: tickets in a ring; releases, cancellations and reclaims grant the head tickets that
 *   now fit, moving the permits to their owners before waking them.
 * - `_semaphore-doorbell.ts`: one armed Atomics.waitAsync per owner tells its queued acquires they were granted.
 * - `_semaphore-waiter.ts`: one pending acquire: timeout, abort, leaving the queue, holding the process alive.
 * - Every thread has an owner id with a ledger in shared memory: `reclaim(owner)` returns exactly what it held.
 * @module
 */
import { QueueFullError, SluiceError, TimeoutError } from './errors.ts'
import { describeValue, invalidOption, optionalDurationMs, optionalSignal, positiveInteger } from './validate.ts'
import {
  AVAIL_MASK,
  createLayout,
  kHead,
  kOwnerGeneration,
  kOwnerGranted,
  kOwnerHeld,
  kOwnerIntent,
  kOwnerStatus,
  kSlotState,
  kState,
  kTail,
  kWaiting,
  MAX_CAPACITY,
  MAX_OWNERS,
  OWNER_DEAD,
  OWNER_FREE,
  OWNER_LIVE,
  readLayout,
  SLOT_CANCELLED,
  slotWord,
} from './_semaphore-layout.ts'
import { Doorbell, ring } from './_semaphore-doorbell.ts'
import type { Parked } from './_semaphore-doorbell.ts'
import type { Layout } from './_semaphore-layout.ts'
import { cancelOwnerTickets, cancelTicket, enqueue, grantHeads } from './_semaphore-queue.ts'
import { FAST_DONE, FAST_REFUSED, Section } from './_semaphore-section.ts'
import { localWaiters, PendingAcquire, RETRY_MS } from './_semaphore-waiter.ts'
import type { WaiterHost } from './_semaphore-waiter.ts'

/** Options of `new SharedSemaphore()`. */
export interface SharedSemaphoreOptions {
  /** Permits in the pool: a positive integer, at most 1 048 575. */
  capacity: number
  /**
   * Most acquires that may wait at once across all threads; one more rejects with `QueueFullError`.
   * Default 16 384 (the gateway queues up to ~10 000 streams). The ring has room for twice as many tickets
   * (cancelled ones keep their slot until the head passes them): 16–32 bytes of shared memory per waiter
   * allowed, 256 KiB by default.
   */
  maxWaiting?: number
  /** Most owner ids (instances: one per thread, usually) alive at once, the creator included. Default 256, max 1023. */
  maxOwners?: number
}

/** Options of `acquire()`. */
export interface SemaphoreAcquireOptions {
  /** Stops waiting: the promise rejects with `signal.reason` and the ticket leaves the queue. */
  signal?: AbortSignal
  /** Stops waiting after this many milliseconds with a `TimeoutError` (code `ERR_TIMEOUT`). */
  timeoutMs?: number
}

/** The structured-cloneable identity of a semaphore: `postMessage` it, then `SharedSemaphore.from(handle)`. */
export interface SemaphoreHandle {
  readonly kind: 'sluice.SharedSemaphore'
  readonly buffer: SharedArrayBuffer
}

/** Permits held by one acquire. Belongs to the thread that acquired it. */
export interface Permit extends Disposable {
  readonly weight: number
  readonly released: boolean
  /** Gives the permits back. Idempotent: only the first call (or dispose) releases. */
  release(): void
}

const DEFAULT_MAX_WAITING = 16_384
const DEFAULT_MAX_OWNERS = 256
const MAX_WAITING = 1 << 20
/** A synchronous operation waits at most this long for another thread's section before retrying later. */
const LOCK_BUDGET_MS = 2
/** `reclaim()` is synchronous and must finish: it waits longer. */
const RECLAIM_LOCK_BUDGET_MS = 1_000

// `from()` passes an existing layout through the constructor.
class Attach {
  readonly layout: Layout
  readonly owner: number
  constructor(layout: Layout, owner: number) {
    this.layout = layout
    this.owner = owner
  }
}

/**
 * A weighted, FIFO-fair counting semaphore shared across threads.
 *
 * @example
 * ```ts
 * const sem = new SharedSemaphore({ capacity: 50 })
 * worker.postMessage(sem.handle)           // in the worker: const sem = SharedSemaphore.from(handle)
 * worker.on('exit', () => sem.reclaim(workerOwnerId)) // the worker posts `sem.owner` to its parent
 * const permit = await sem.acquire(3, { timeoutMs: 1_000 })
 * try { ... } finally { permit.release() }
 * ```
 */
export class SharedSemaphore {
  /** `postMessage` this to another thread and call `SharedSemaphore.from(handle)` there. */
  readonly handle: SemaphoreHandle
  /** This instance's owner id: what the parent passes to `reclaim()` if this thread dies. */
  readonly owner: number
  readonly capacity: number
  readonly #layout: Layout
  readonly #i32: Int32Array
  readonly #section: Section
  readonly #generation: number
  readonly #waiters: Map<number, Parked>
  readonly #host: WaiterHost<Permit>
  readonly #release: (weight: number) => void

  constructor(options: SharedSemaphoreOptions) {
    let layout: Layout
    let owner = 0
    if (options instanceof Attach) {
      layout = options.layout
      owner = options.owner
    } else {
      if (typeof options !== 'object' || options === null) invalidOption('options', 'an object', options)
      const capacity = positiveInteger('capacity', options.capacity)
      if (capacity > MAX_CAPACITY) invalidOption('capacity', `a positive integer ≤ ${MAX_CAPACITY}`, capacity)
      const maxWaiting = limit('maxWaiting', options.maxWaiting, DEFAULT_MAX_WAITING, MAX_WAITING)
      const maxOwners = limit('maxOwners', options.maxOwners, DEFAULT_MAX_OWNERS, MAX_OWNERS)
      layout = createLayout(capacity, maxOwners, maxWaiting)
      layout.i32[layout.owner(owner, kOwnerStatus)] = OWNER_LIVE
    }
    this.#layout = layout
    this.#i32 = layout.i32
    this.owner = owner
    this.capacity = layout.capacity
    this.handle = Object.freeze({ kind: 'sluice.SharedSemaphore', buffer: layout.i32.buffer as SharedArrayBuffer })
    this.#section = new Section(layout, owner)
    this.#generation = Atomics.load(this.#i32, layout.owner(owner, kOwnerGeneration))
    this.#waiters = localWaiters(this.handle.buffer)
    this.#release = (weight) => this.#giveBack(weight)
    this.#host = {
      doorbell: new Doorbell(layout, owner),
      local: this.#waiters,
      enter: (waiter) => this.#enter(waiter),
      leave: (waiter) => this.#leave(waiter),
      outcome: (waiter) => this.#outcome(waiter),
    }
  }

  /** Attaches to a semaphore created in another thread (or this one), with a new owner id. */
  static from(handle: SemaphoreHandle): SharedSemaphore {
    const layout = typeof handle === 'object' && handle !== null ? readLayout(handle.buffer) : undefined
    if (!layout) invalidOption('handle', 'a SemaphoreHandle (`semaphore.handle`)', handle)
    for (let owner = 0; owner < layout.maxOwners; owner++) {
      const status = layout.owner(owner, kOwnerStatus)
      if (Atomics.compareExchange(layout.i32, status, OWNER_FREE, OWNER_LIVE) === OWNER_FREE) {
        return new SharedSemaphore(new Attach(layout, owner) as unknown as SharedSemaphoreOptions)
      }
    }
    const advice = 'reclaim the owners of exited threads'
    throw new RangeError(`All ${layout.maxOwners} owner ids of this semaphore are in use (\`maxOwners\`): ${advice}`)
  }

  /** Free permits now (one atomic read; any thread). */
  get available(): number {
    return Atomics.load(this.#i32, kState) & AVAIL_MASK
  }

  /** Acquires waiting in the queue now, across all threads (one atomic read). */
  get waiting(): number {
    return Atomics.load(this.#i32, kWaiting)
  }

  /**
   * Takes `weight` permits if they are free and nobody is queued; never waits. Returns null otherwise
   * (also, rarely, when another thread's critical section stays busy for a couple of milliseconds).
   * @throws RangeError if `weight` is not an integer from 1 to `capacity`.
   */
  tryAcquire(weight = 1): Permit | null {
    this.#checkWeight(weight)
    this.#checkOwner()
    const fast = this.#section.adjust(-weight)
    if (fast === FAST_DONE) return this.#permit(weight)
    if (fast === FAST_REFUSED) return null
    const section = this.#section
    if (!section.lock(LOCK_BUDGET_MS)) return null
    if (section.queued || section.avail < weight) {
      section.unlock()
      return null
    }
    section.avail -= weight
    section.setHeld(section.held + weight)
    section.commit()
    return this.#permit(weight)
  }

  /**
   * Resolves with `weight` permits, taken all at once, in FIFO order across threads. Rejects with a RangeError
   * for a bad weight, `signal.reason` on abort, a `TimeoutError` after `timeoutMs`, or a `QueueFullError` when
   * `maxWaiting` acquires already wait. While it waits, the process stays alive.
   */
  acquire(weight = 1, options?: SemaphoreAcquireOptions): Promise<Permit> {
    let signal: AbortSignal | undefined
    let timeoutMs: number | undefined
    try {
      this.#checkWeight(weight)
      if (options !== undefined) {
        if (typeof options !== 'object' || options === null) invalidOption('options', 'an object', options)
        signal = optionalSignal('signal', options.signal)
        timeoutMs = optionalDurationMs('timeoutMs', options.timeoutMs)
      }
      this.#checkOwner()
    } catch (error) {
      return Promise.reject(error)
    }
    if (signal?.aborted) return Promise.reject(signal.reason)
    if (this.#section.adjust(-weight) === FAST_DONE) return Promise.resolve(this.#permit(weight))
    return new PendingAcquire(this.#host, weight, signal, timeoutMs).promise
  }

  /**
   * Gives back everything owner `ownerId` held (its permits, including grants it was not woken for yet),
   * cancels its queued acquires, wakes the waiters that now fit, frees the id for reuse, and returns the weight
   * given back. Call it once per exited thread, from its Worker 'exit' handler, never for a live owner: the id
   * is reused by the next `from()`. Exact even if the thread died inside a critical section. Returns 0 for an
   * owner id that is not in use.
   *
   * Deno 2.9: after `worker.terminate()`, 'exit' fires at once but the worker keeps running JS until it returns
   * to its event loop (seconds, for a long promise chain). Reclaiming it then races with a live owner. There,
   * wait until the worker is seen to stop (test/scenarios/semaphore-crash.ts watches a counter it bumps), or
   * let workers end themselves (an uncaught error or `process.exit()` in the worker stops it at once).
   *
   * Throws a TimeoutError if another owner keeps the section lock for 1 s (a thread that died holding it and
   * was not reclaimed yet: reclaim that one, then call this again).
   */
  reclaim(ownerId: number): number {
    const layout = this.#layout
    if (!Number.isInteger(ownerId) || ownerId < 0 || ownerId >= layout.maxOwners) {
      throw new RangeError(
        `Expected \`ownerId\` to be an integer from 0 to ${layout.maxOwners - 1}, got ${describeValue(ownerId)}`,
      )
    }
    if (ownerId === this.owner) throw new RangeError(`Owner ${ownerId} is this instance's own: reclaim it from another`)
    const i32 = this.#i32
    const status = layout.owner(ownerId, kOwnerStatus)
    // LIVE → DEAD; DEAD already means an earlier reclaim was interrupted: finish it.
    if (Atomics.compareExchange(i32, status, OWNER_LIVE, OWNER_DEAD) === OWNER_FREE) return 0
    // First, so that a (wrongly) reclaimed live instance sees it at once.
    Atomics.add(i32, layout.owner(ownerId, kOwnerGeneration), 1)

    const section = this.#section
    this.#lockForReclaim(ownerId)
    const end = section.read(kTail)
    const held = layout.owner(ownerId, kOwnerHeld)
    const granted = layout.owner(ownerId, kOwnerGranted)
    const weight = section.read(held) + section.read(granted)
    section.write(held, 0)
    section.write(granted, 0)
    section.write(layout.owner(ownerId, kOwnerIntent), 0)
    section.avail += weight
    const woken: number[] = []
    let more = grantHeads(section, layout, woken)
    section.commit()
    this.#wake(woken)

    // Its tickets behind the head (the grant loop cancels the ones it reaches), a log-full batch at a time.
    for (let ticket = Atomics.load(i32, kHead); ((end - ticket) | 0) > 0; ) {
      this.#lockForReclaim(ownerId)
      woken.length = 0
      ticket = cancelOwnerTickets(section, layout, ownerId, { from: ticket, to: end }, woken)
      more = grantHeads(section, layout, woken) || more
      section.commit()
      this.#wake(woken)
    }
    if (more) this.#serve()
    this.#ringAll()
    Atomics.compareExchange(i32, status, OWNER_DEAD, OWNER_FREE)
    return weight
  }

  #permit(weight: number): Permit {
    return new SemaphorePermit(weight, this.#release)
  }

  #giveBack(weight: number): void {
    if (this.#reclaimed()) return
    if (this.#section.adjust(weight) === FAST_DONE) return
    this.#giveBackLocked(weight)
  }

  #giveBackLocked(weight: number): void {
    const section = this.#section
    if (!section.lock(LOCK_BUDGET_MS)) {
      setTimeout(() => this.#giveBackLocked(weight), RETRY_MS)
      return
    }
    if (this.#reclaimed()) {
      section.unlock()
      return
    }
    section.avail += weight
    section.setHeld(section.held - weight)
    this.#grantAndCommit()
  }

  #enter(waiter: PendingAcquire<Permit>): Permit | 'queued' | 'busy' | Error {
    const section = this.#section
    if (!section.lock(LOCK_BUDGET_MS)) return 'busy'
    if (this.#reclaimed()) {
      section.unlock()
      return this.#reclaimedError()
    }
    const weight = waiter.weight
    if (!section.queued && section.avail >= weight) {
      section.avail -= weight
      section.setHeld(section.held + weight)
      section.commit()
      return this.#permit(weight)
    }
    const ticket = enqueue(section, this.#layout, weight, this.owner)
    if (ticket === undefined) {
      section.unlock()
      const max = this.#layout.maxWaiting
      return new QueueFullError(`The semaphore's queue is full: ${max} acquires already wait (\`maxWaiting\`)`, max)
    }
    section.commit()
    waiter.ticket = ticket
    return 'queued'
  }

  #leave(waiter: PendingAcquire<Permit>): boolean {
    const section = this.#section
    if (!section.lock(LOCK_BUDGET_MS)) return false
    // A grant that won the race moved the permits to this owner: give them back (unless a reclaim took them).
    if (cancelTicket(section, this.#layout, waiter.ticket) === 'granted' && !this.#reclaimed()) {
      section.avail += waiter.weight
      section.setHeld(section.held - waiter.weight)
    }
    this.#grantAndCommit()
    return true
  }

  #outcome(waiter: PendingAcquire<Permit>): Permit | Error {
    const word = Atomics.load(this.#i32, this.#layout.slot(waiter.ticket) + kSlotState)
    if (this.#reclaimed() || word === slotWord(waiter.ticket, SLOT_CANCELLED)) return this.#reclaimedError()
    return this.#permit(waiter.weight)
  }

  /** In a locked section: grant what now fits, commit, wake; continue in new sections if the log filled up. */
  #grantAndCommit(): void {
    const woken: number[] = []
    const more = grantHeads(this.#section, this.#layout, woken)
    this.#section.commit()
    this.#wake(woken)
    if (more) this.#serve()
  }

  #serve(): void {
    if (!this.#section.lock(LOCK_BUDGET_MS)) {
      setTimeout(() => this.#serve(), RETRY_MS)
      return
    }
    this.#grantAndCommit()
  }

  /**
   * Wakes the waiters of the (ticket, owner) pairs a section granted or cancelled: this thread's directly,
   * the others by ringing their owner's doorbell once.
   */
  #wake(woken: readonly number[]): void {
    let rung: number[] | undefined
    for (let k = 0; k < woken.length; k += 2) {
      const local = this.#waiters.get(woken[k]!)
      if (local) {
        local.changed()
        continue
      }
      const owner = woken[k + 1]!
      if (rung?.includes(owner)) continue
      ring(this.#layout, owner)
      ;(rung ??= []).push(owner)
    }
  }

  #lockForReclaim(ownerId: number): void {
    if (this.#section.lock(RECLAIM_LOCK_BUDGET_MS)) return
    throw new TimeoutError(
      `reclaim(${ownerId}): the semaphore stayed locked for ${RECLAIM_LOCK_BUDGET_MS} ms by another owner; ` +
        'if that thread has exited too, reclaim it first, then call reclaim() again',
      RECLAIM_LOCK_BUDGET_MS,
    )
  }

  /**
   * A thread that died between committing a grant and ringing the doorbell left that waiter asleep: ring every
   * live owner (a doorbell with nothing new only costs its owner a look at its first parked ticket).
   */
  #ringAll(): void {
    const layout = this.#layout
    for (let owner = 0; owner < layout.maxOwners; owner++) {
      if (Atomics.load(this.#i32, layout.owner(owner, kOwnerStatus)) === OWNER_LIVE) ring(layout, owner)
    }
  }

  #checkWeight(weight: unknown): asserts weight is number {
    if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < 1 || weight > this.capacity) {
      const expected = `an integer from 1 to ${this.capacity}`
      throw new RangeError(`Expected \`weight\` to be ${expected}, got ${describeValue(weight)}`)
    }
  }

  #checkOwner(): void {
    if (this.#reclaimed()) throw this.#reclaimedError()
  }

  #reclaimed(): boolean {
    return Atomics.load(this.#i32, this.#layout.owner(this.owner, kOwnerGeneration)) !== this.#generation
  }

  #reclaimedError(): SluiceError {
    return new SluiceError('ERR_CLOSED', `Owner ${this.owner} of this semaphore was reclaimed`)
  }
}

class SemaphorePermit implements Permit {
  readonly weight: number
  #release: ((weight: number) => void) | undefined

  constructor(weight: number, release: (weight: number) => void) {
    this.weight = weight
    this.#release = release
  }

  get released(): boolean {
    return this.#release === undefined
  }

  release(): void {
    const release = this.#release
    if (release === undefined) return
    this.#release = undefined
    release(this.weight)
  }

  [Symbol.dispose](): void {
    this.release()
  }
}

function limit(name: string, value: unknown, fallback: number, max: number): number {
  if (value === undefined) return fallback
  const checked = positiveInteger(name, value)
  if (checked > max) invalidOption(name, `a positive integer ≤ ${max}`, value)
  return checked
}

/**
 * Model-based tests of SharedSemaphore against a plain JS FIFO weighted semaphore, plus a fault-injection
 * property for crash recovery: a thread killed after any number of shared-memory writes is reclaimed exactly.
 */
import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import { SharedSemaphore } from '../core/semaphore.ts'
import type { Permit } from '../core/semaphore.ts'

const OWNERS = 3
const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 0))

/** The reference: what a strict-FIFO weighted semaphore does, in a dozen lines. */
class ModelSemaphore {
  readonly capacity: number
  available: number
  queue: { id: number; owner: number; weight: number }[] = []
  permits: { id: number; owner: number; weight: number }[] = []
  held: number[] = Array.from({ length: OWNERS }, () => 0)
  grants: number[] = []
  rejected: Record<number, string> = {}
  nextId = 0

  constructor(capacity: number) {
    this.capacity = capacity
    this.available = capacity
  }

  acquire(owner: number, weight: number): number {
    const id = this.nextId++
    this.queue.push({ id, owner, weight })
    this.pump()
    return id
  }

  tryAcquire(owner: number, weight: number): number | null {
    if (this.queue.length > 0 || this.available < weight) return null
    return this.acquire(owner, weight)
  }

  release(index: number): void {
    const [permit] = this.permits.splice(index, 1)
    this.available += permit!.weight
    this.held[permit!.owner]! -= permit!.weight
    this.pump()
  }

  cancel(index: number): number {
    const [waiter] = this.queue.splice(index, 1)
    this.rejected[waiter!.id] = 'cancelled'
    this.pump()
    return waiter!.id
  }

  reclaim(owner: number): number {
    const weight = this.held[owner]!
    this.held[owner] = 0
    this.available += weight
    this.permits = this.permits.filter((permit) => permit.owner !== owner)
    for (const waiter of this.queue.filter((w) => w.owner === owner)) this.rejected[waiter.id] = 'ERR_CLOSED'
    this.queue = this.queue.filter((waiter) => waiter.owner !== owner)
    this.pump()
    return weight
  }

  pump(): void {
    while (this.queue.length > 0 && this.queue[0]!.weight <= this.available) {
      const waiter = this.queue.shift()!
      this.available -= waiter.weight
      this.held[waiter.owner]! += waiter.weight
      this.permits.push(waiter)
      this.grants.push(waiter.id)
    }
  }
}

class RealSystem {
  readonly root: SharedSemaphore
  readonly instances: SharedSemaphore[]
  readonly permits = new Map<number, Permit>()
  readonly controllers = new Map<number, AbortController>()
  readonly grants: number[] = []
  readonly rejected: Record<number, string> = {}

  constructor(capacity: number) {
    this.root = new SharedSemaphore({ capacity, maxWaiting: 64 })
    this.instances = [this.root]
    for (let i = 1; i < OWNERS; i++) this.instances.push(SharedSemaphore.from(this.root.handle))
  }

  track(id: number, promise: Promise<Permit>, controller: AbortController): void {
    this.controllers.set(id, controller)
    promise.then(
      (permit) => {
        this.controllers.delete(id)
        this.permits.set(id, permit)
        this.grants.push(id)
      },
      (error: { code?: string } | string) => {
        this.controllers.delete(id)
        this.rejected[id] = typeof error === 'string' ? error : (error.code ?? String(error))
      },
    )
  }
}

type Cmd = fc.AsyncCommand<ModelSemaphore, RealSystem>

async function compare(model: ModelSemaphore, real: RealSystem): Promise<void> {
  await settle()
  expect(real.grants).toEqual(model.grants)
  expect(real.rejected).toEqual(model.rejected)
  expect(real.root.available).toBe(model.available)
  expect(real.root.waiting).toBe(model.queue.length)
}

const commands = (capacity: number): fc.Arbitrary<Cmd>[] => [
  fc.record({ owner: fc.nat(OWNERS - 1), weight: fc.integer({ min: 1, max: capacity }) }).map(
    ({ owner, weight }): Cmd => ({
      check: (model) => model.queue.length < 64,
      run: async (model, real) => {
        const id = model.acquire(owner, weight)
        const controller = new AbortController()
        real.track(id, real.instances[owner]!.acquire(weight, { signal: controller.signal }), controller)
        await compare(model, real)
      },
      toString: () => `acquire(owner ${owner}, ${weight})`,
    }),
  ),
  fc.record({ owner: fc.nat(OWNERS - 1), weight: fc.integer({ min: 1, max: capacity }) }).map(
    ({ owner, weight }): Cmd => ({
      check: () => true,
      run: async (model, real) => {
        const id = model.tryAcquire(owner, weight)
        const permit = real.instances[owner]!.tryAcquire(weight)
        expect(permit === null).toBe(id === null)
        if (permit && id !== null) {
          real.permits.set(id, permit)
          real.grants.push(id)
        }
        await compare(model, real)
      },
      toString: () => `tryAcquire(owner ${owner}, ${weight})`,
    }),
  ),
  fc.nat().map(
    (pick): Cmd => ({
      check: (model) => model.permits.length > 0,
      run: async (model, real) => {
        const index = pick % model.permits.length
        real.permits.get(model.permits[index]!.id)!.release()
        model.release(index)
        await compare(model, real)
      },
      toString: () => `release(#${pick})`,
    }),
  ),
  fc.nat().map(
    (pick): Cmd => ({
      check: (model) => model.queue.length > 0,
      run: async (model, real) => {
        const id = model.cancel(pick % model.queue.length)
        real.controllers.get(id)!.abort('cancelled')
        await compare(model, real)
      },
      toString: () => `cancel(#${pick})`,
    }),
  ),
  fc.integer({ min: 1, max: OWNERS - 1 }).map(
    (owner): Cmd => ({
      check: () => true,
      run: async (model, real) => {
        expect(real.root.reclaim(real.instances[owner]!.owner)).toBe(model.reclaim(owner))
        real.instances[owner] = SharedSemaphore.from(real.root.handle)
        await compare(model, real)
      },
      toString: () => `reclaim(owner ${owner})`,
    }),
  ),
]

describe('SharedSemaphore against a reference FIFO weighted semaphore', () => {
  test('acquire / tryAcquire / release / cancel / reclaim sequences match the model', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 6 }).chain((capacity) =>
          fc.tuple(fc.constant(capacity), fc.commands(commands(capacity), { maxCommands: 40 })),
        ),
        async ([capacity, cmds]) => {
          const real = new RealSystem(capacity)
          await fc.asyncModelRun(() => ({ model: new ModelSemaphore(capacity), real }), cmds)
          // Leave nothing pending: cancel every waiter, release every permit, then all must be free again.
          for (const controller of real.controllers.values()) controller.abort('cleanup')
          await settle()
          for (const permit of real.permits.values()) permit.release()
          expect([real.root.available, real.root.waiting]).toEqual([capacity, 0])
        },
      ),
      { numRuns: 150 },
    )
  })
})

// Fault injection. A terminated thread stops between two instructions; here the victim stops right before its
// N-th call to an Atomics function that writes or notifies (an exception, so nothing after it runs), for every N.
class Killed extends Error {}
const WRITES = new Set(['store', 'compareExchange', 'add', 'sub', 'and', 'or', 'xor', 'exchange', 'notify'])

/** Runs `victim` until its `limit`-th shared write; returns how many writes it made (Infinity: not killed). */
function killAt(limit: number, victim: () => void): number {
  const real = Atomics
  let count = 0
  globalThis.Atomics = new Proxy(real, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property)
      if (typeof property !== 'string' || !WRITES.has(property) || typeof value !== 'function') return value
      return (...args: unknown[]) => {
        if (count === limit) throw new Killed()
        count++
        return (value as (...a: unknown[]) => unknown).apply(target, args)
      }
    },
  })
  try {
    victim()
    return Number.POSITIVE_INFINITY
  } catch (error) {
    if (!(error instanceof Killed)) throw error
    return count
  } finally {
    globalThis.Atomics = real
  }
}

/** What the victim does when it dies: each kind runs a different critical section. */
type VictimOp = 'fast-acquire' | 'fast-release' | 'enqueue' | 'release-and-grant' | 'reclaim-another'

interface CrashSetup {
  op: VictimOp
  capacity: number
  victimHolds: number
  otherHolds: number
  queued: number[]
}

const crashSetups = fc
  .record({
    op: fc.constantFrom<VictimOp>('fast-acquire', 'fast-release', 'enqueue', 'release-and-grant', 'reclaim-another'),
    capacity: fc.integer({ min: 4, max: 12 }),
    victimHolds: fc.integer({ min: 1, max: 3 }),
    otherHolds: fc.integer({ min: 0, max: 3 }),
    queued: fc.array(fc.integer({ min: 1, max: 4 }), { maxLength: 40 }),
  })
  // The third owner holds 1, and the fast paths need 1 free.
  .filter((setup) => setup.victimHolds + setup.otherHolds + 2 <= setup.capacity)

/**
 * Builds the scene: `other` holds permits and has waiters queued (a long queue makes grant sections span several
 * redo logs), the victim holds permits, a third owner is dead and not reclaimed yet. Returns what the test needs.
 */
function scene(setup: CrashSetup) {
  const root = new SharedSemaphore({ capacity: setup.capacity, maxWaiting: 64 })
  const other = SharedSemaphore.from(root.handle)
  const victim = SharedSemaphore.from(root.handle)
  const third = SharedSemaphore.from(root.handle)
  const thirdHolds = third.tryAcquire(1)!.weight
  const otherPermits: Permit[] = []
  if (setup.otherHolds > 0) otherPermits.push(other.tryAcquire(setup.otherHolds)!)
  const victimPermit = victim.tryAcquire(setup.victimHolds)!
  const free = root.available
  // Fill what is left, so that queued waiters really wait (except for the fast paths, which need a free pool).
  const filler = setup.op.startsWith('fast') || free === 0 ? undefined : other.tryAcquire(free)!
  const queued = setup.op.startsWith('fast') ? [] : setup.queued
  const queue = queued.map((weight) => other.acquire(Math.min(weight, setup.capacity)))
  return { root, other, victim, third, thirdHolds, otherPermits, victimPermit, filler, queue }
}

describe('crash recovery', () => {
  test('a thread killed after any number of shared writes is reclaimed exactly', async () => {
    await fc.assert(
      fc.asyncProperty(crashSetups, async (setup) => {
        // First run the operation to completion to learn how many writes it makes, then kill it at each one.
        for (let limit = 0; ; limit++) {
          const s = scene(setup)
          await settle()
          const heldBefore = setup.victimHolds
          let heldAfter = heldBefore
          const made = killAt(limit, () => {
            switch (setup.op) {
              case 'fast-acquire':
                heldAfter += 1
                s.victim.tryAcquire(1)
                break
              case 'fast-release':
              case 'release-and-grant':
                heldAfter = 0
                s.victimPermit.release()
                break
              case 'enqueue':
                void s.victim.acquire(setup.capacity).catch(() => {})
                break
              case 'reclaim-another':
                s.victim.reclaim(s.third.owner)
                break
            }
          })
          // The parent sees the thread exit and reclaims it (and the third owner, which was dead all along).
          const reclaimed = s.root.reclaim(s.victim.owner)
          expect([heldBefore, heldAfter]).toContain(reclaimed)
          expect(s.root.reclaim(s.third.owner) + s.root.reclaim(s.victim.owner)).toBeLessThanOrEqual(s.thirdHolds)
          // Liveness and exactness: every queued waiter of `other` is served as permits come back, and in the end
          // the pool is whole again.
          for (const permit of s.otherPermits) permit.release()
          s.filler?.release()
          for (const pending of s.queue) (await pending).release()
          expect([s.root.available, s.root.waiting]).toEqual([setup.capacity, 0])
          if (made === Number.POSITIVE_INFINITY) break
        }
      }),
      { numRuns: 60 },
    )
  })
})

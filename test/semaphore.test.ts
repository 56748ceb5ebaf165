import { describe, expect, test } from 'vitest'
import { QueueFullError, SluiceError, TimeoutError } from '../core/errors.ts'
import { SharedSemaphore } from '../core/semaphore.ts'
import type { Permit } from '../core/semaphore.ts'

/** How validate.ts shows a number it rejects. */
const n = (value: number): string => `\`${value}\` (number)`

/** Lets every pending promise callback run (same-thread grants settle in microtasks). */
const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 0))

function track(promise: Promise<Permit>): { permit?: Permit; error?: unknown; done: Promise<void> } {
  const state: { permit?: Permit; error?: unknown; done: Promise<void> } = { done: Promise.resolve() }
  state.done = promise.then(
    (permit) => void (state.permit = permit),
    (error: unknown) => void (state.error = error),
  )
  return state
}

describe('options validation', () => {
  test.each([
    [{ capacity: 0 }, 'Expected `capacity` to be a positive integer, got `0` (number)', RangeError],
    [{ capacity: -3 }, 'Expected `capacity` to be a positive integer, got `-3` (number)', RangeError],
    [{ capacity: 1.5 }, 'Expected `capacity` to be a positive integer, got `1.5` (number)', RangeError],
    [{ capacity: '5' }, 'Expected `capacity` to be a positive integer, got `5` (string)', TypeError],
    [{}, 'Expected `capacity` to be a positive integer, got `undefined` (undefined)', TypeError],
    [{ capacity: 2 ** 20 }, `Expected \`capacity\` to be a positive integer ≤ 1048575, got ${n(2 ** 20)}`, RangeError],
    [{ capacity: 1, maxWaiting: 0 }, 'Expected `maxWaiting` to be a positive integer, got `0` (number)', RangeError],
    [
      { capacity: 1, maxWaiting: 2 ** 21 },
      `Expected \`maxWaiting\` to be a positive integer ≤ 1048576, got ${n(2 ** 21)}`,
      RangeError,
    ],
    [{ capacity: 1, maxOwners: 0 }, 'Expected `maxOwners` to be a positive integer, got `0` (number)', RangeError],
    [
      { capacity: 1, maxOwners: 1024 },
      `Expected \`maxOwners\` to be a positive integer ≤ 1023, got ${n(1024)}`,
      RangeError,
    ],
    [{ capacity: 1, maxOwners: null }, 'Expected `maxOwners` to be a positive integer, got `null` (null)', TypeError],
  ])('%o is rejected', (options, message, type) => {
    expect(() => new SharedSemaphore(options as never)).toThrow(new type(message))
  })

  test('options must be an object', () => {
    expect(() => new SharedSemaphore(undefined as never)).toThrow(
      new TypeError('Expected `options` to be an object, got `undefined` (undefined)'),
    )
  })

  test.each([0, 6, 1.5, -1, Number.NaN, '1', null])('weight %o is a RangeError naming the value', async (weight) => {
    const sem = new SharedSemaphore({ capacity: 5 })
    const type = weight === null ? 'null' : typeof weight
    const message = `Expected \`weight\` to be an integer from 1 to 5, got \`${String(weight)}\` (${type})`
    expect(() => sem.tryAcquire(weight as never)).toThrow(new RangeError(message))
    await expect(sem.acquire(weight as never)).rejects.toThrow(new RangeError(message))
    expect(sem.available).toBe(5)
  })

  test('acquire options are validated', async () => {
    const sem = new SharedSemaphore({ capacity: 1 })
    await expect(sem.acquire(1, { timeoutMs: 0 })).rejects.toThrow(
      new RangeError('Expected `timeoutMs` to be a finite number of milliseconds > 0, got `0` (number)'),
    )
    await expect(sem.acquire(1, { timeoutMs: Number.NaN })).rejects.toThrow(RangeError)
    await expect(sem.acquire(1, { signal: {} as AbortSignal })).rejects.toThrow(
      new TypeError('Expected `signal` to be an AbortSignal, got `[object Object]` (object)'),
    )
  })

  test('from() rejects anything but a handle', () => {
    expect(() => SharedSemaphore.from({ buffer: new SharedArrayBuffer(4096) } as never)).toThrow(TypeError)
    expect(() => SharedSemaphore.from(null as never)).toThrow(
      new TypeError('Expected `handle` to be a SemaphoreHandle (`semaphore.handle`), got `null` (null)'),
    )
  })

  test('reclaim() rejects ids that are not owner ids, and its own', () => {
    const sem = new SharedSemaphore({ capacity: 1, maxOwners: 4 })
    const message = 'Expected `ownerId` to be an integer from 0 to 3, got `4` (number)'
    expect(() => sem.reclaim(4)).toThrow(new RangeError(message))
    expect(() => sem.reclaim(-1)).toThrow(RangeError)
    expect(() => sem.reclaim(0)).toThrow(new RangeError("Owner 0 is this instance's own: reclaim it from another"))
  })
})

describe('acquire and release', () => {
  test('weighted acquire is atomic: a waiter never holds part of its weight', async () => {
    const sem = new SharedSemaphore({ capacity: 5 })
    const held = sem.tryAcquire(3)!
    const heavy = track(sem.acquire(4))
    await settle()
    // 2 free, the waiter needs 4: it holds none of them meanwhile.
    expect([sem.available, sem.waiting, heavy.permit]).toEqual([2, 1, undefined])
    held.release()
    await heavy.done
    expect([heavy.permit?.weight, sem.available, sem.waiting]).toEqual([4, 1, 0])
    heavy.permit!.release()
    expect(sem.available).toBe(5)
  })

  test('tryAcquire never waits and never barges past a queued waiter', async () => {
    const sem = new SharedSemaphore({ capacity: 5 })
    const held = sem.tryAcquire(2)!
    expect(sem.tryAcquire(4)).toBeNull()
    const queued = track(sem.acquire(4))
    // 3 are free, but a waiter is queued: neither tryAcquire nor acquire may take them.
    expect(sem.tryAcquire(1)).toBeNull()
    const late = track(sem.acquire(1))
    await settle()
    expect([queued.permit, late.permit, sem.available, sem.waiting]).toEqual([undefined, undefined, 3, 2])
    held.release()
    await Promise.all([queued.done, late.done])
    expect([queued.permit?.weight, late.permit?.weight, sem.available]).toEqual([4, 1, 0])
  })

  test('a queue mixing weights is served in FIFO order', async () => {
    const sem = new SharedSemaphore({ capacity: 4 })
    const all = sem.tryAcquire(4)!
    const order: number[] = []
    const weights = [3, 1, 2, 1, 4, 1]
    const permits = weights.map((weight, index) =>
      sem.acquire(weight).then((permit) => {
        order.push(index)
        return permit
      }),
    )
    await settle()
    expect(sem.waiting).toBe(6)
    all.release()
    // 4 free: #0 (3) and #1 (1) fit; #2 (2) does not until someone releases.
    await settle()
    expect(order).toEqual([0, 1])
    ;(await permits[0]!).release()
    await settle()
    expect(order).toEqual([0, 1, 2, 3])
    ;(await permits[1]!).release()
    ;(await permits[2]!).release()
    await settle()
    // #4 needs all 4: #3 still holds 1, so #4 waits and #5 waits behind it (no overtaking).
    expect(order).toEqual([0, 1, 2, 3])
    ;(await permits[3]!).release()
    await settle()
    expect(order).toEqual([0, 1, 2, 3, 4])
    ;(await permits[4]!).release()
    await settle()
    expect(order).toEqual([0, 1, 2, 3, 4, 5])
    ;(await permits[5]!).release()
    expect([sem.available, sem.waiting]).toEqual([4, 0])
  })

  test('a heavy waiter is not starved by a stream of weight-1 acquirers', async () => {
    const sem = new SharedSemaphore({ capacity: 3 })
    let clock = 0
    const lights: { queuedAt: number; grantedAt: number }[] = []
    const heavy = { queuedAt: 0, grantedAt: 0 }
    let heavyDone: Promise<void> | undefined
    const lightLoop = async (loop: number): Promise<void> => {
      for (let i = 0; i < 40; i++) {
        // Mid-stream, with every permit taken and light acquirers queued, a weight-3 acquire arrives.
        if (loop === 0 && i === 5) {
          heavy.queuedAt = ++clock
          heavyDone = sem.acquire(3).then((permit) => {
            heavy.grantedAt = ++clock
            permit.release()
          })
        }
        const record = { queuedAt: ++clock, grantedAt: 0 }
        lights.push(record)
        const permit = await sem.acquire(1)
        record.grantedAt = ++clock
        await Promise.resolve()
        permit.release()
      }
    }
    await Promise.all([lightLoop(0), lightLoop(1), lightLoop(2), lightLoop(3)])
    await heavyDone
    expect(heavy.grantedAt).toBeGreaterThan(0)
    const after = lights.filter((light) => light.queuedAt > heavy.queuedAt)
    expect(after.length).toBeGreaterThan(100)
    // Nobody who came after the heavy waiter got permits before it.
    expect(after.filter((light) => light.grantedAt < heavy.grantedAt)).toEqual([])
    expect([sem.available, sem.waiting]).toEqual([3, 0])
  })

  test('timeoutMs rejects with a TimeoutError carrying its code, and the ticket leaves the queue', async () => {
    const sem = new SharedSemaphore({ capacity: 2 })
    const held = sem.tryAcquire(2)!
    const started = performance.now()
    const error = await sem.acquire(1, { timeoutMs: 30 }).catch((e: unknown) => e)
    const elapsed = performance.now() - started
    expect(error).toBeInstanceOf(TimeoutError)
    expect(error).toMatchObject({ code: 'ERR_TIMEOUT', timeoutMs: 30, name: 'TimeoutError' })
    expect(elapsed).toBeGreaterThanOrEqual(25)
    expect(elapsed).toBeLessThan(1_000)
    expect([sem.available, sem.waiting]).toEqual([0, 0])
    held.release()
    expect(sem.available).toBe(2)
  })

  test('abort rejects with signal.reason itself, also when already aborted', async () => {
    const sem = new SharedSemaphore({ capacity: 1 })
    const reason = { why: 'client left' }
    expect(await sem.acquire(1, { signal: AbortSignal.abort(reason) }).catch((e: unknown) => e)).toBe(reason)
    expect(sem.available).toBe(1)
    const held = sem.tryAcquire(1)!
    const controller = new AbortController()
    const pending = sem.acquire(1, { signal: controller.signal }).catch((e: unknown) => e)
    await settle()
    expect(sem.waiting).toBe(1)
    controller.abort(reason)
    expect(await pending).toBe(reason)
    expect([sem.available, sem.waiting]).toEqual([0, 0])
    held.release()
    expect(sem.available).toBe(1)
  })

  test('a cancelled heavy head wakes the light waiters behind it', async () => {
    const sem = new SharedSemaphore({ capacity: 4 })
    const held = sem.tryAcquire(2)!
    const controller = new AbortController()
    const heavy = track(sem.acquire(4, { signal: controller.signal }))
    const lightA = track(sem.acquire(1))
    const lightB = track(sem.acquire(1))
    await settle()
    expect([sem.available, sem.waiting, lightA.permit]).toEqual([2, 3, undefined])
    controller.abort()
    await Promise.all([heavy.done, lightA.done, lightB.done])
    expect(heavy.error).toBeInstanceOf(DOMException)
    expect([lightA.permit?.weight, lightB.permit?.weight, sem.available, sem.waiting]).toEqual([1, 1, 0, 0])
    held.release()
    lightA.permit!.release()
    lightB.permit!.release()
    expect(sem.available).toBe(4)
  })

  test('a waiter that times out after being granted gives the permits back', async () => {
    const sem = new SharedSemaphore({ capacity: 1 })
    // structuredClone makes a second SharedArrayBuffer object on the same memory, as a worker would get: grants
    // from it reach `sem` through Atomics.notify, not through this thread's shortcut.
    const other = SharedSemaphore.from({ ...sem.handle, buffer: structuredClone(sem.handle.buffer) })
    const held = other.tryAcquire(1)!
    const controller = new AbortController()
    const pending = sem.acquire(1, { signal: controller.signal }).catch((e: unknown) => e)
    await settle()
    // The grant lands in shared memory, then the waiter is aborted before its wake-up ran.
    held.release()
    expect([sem.available, sem.waiting]).toEqual([0, 0])
    controller.abort('late')
    expect(await pending).toBe('late')
    expect([sem.available, sem.waiting]).toEqual([1, 0])
  })

  test('release is idempotent, and Symbol.dispose releases (also through `using`)', () => {
    const sem = new SharedSemaphore({ capacity: 3 })
    const permit = sem.tryAcquire(2)!
    expect(permit.released).toBe(false)
    permit.release()
    permit.release()
    permit[Symbol.dispose]()
    expect([permit.released, sem.available]).toEqual([true, 3])
    {
      using scoped = sem.tryAcquire(3)!
      expect([scoped.weight, sem.available]).toEqual([3, 0])
    }
    expect(sem.available).toBe(3)
  })

  test('a full queue rejects with QueueFullError until a waiter leaves', async () => {
    const sem = new SharedSemaphore({ capacity: 1, maxWaiting: 2 })
    const held = sem.tryAcquire(1)!
    const controller = new AbortController()
    const first = sem.acquire(1, { signal: controller.signal }).catch((e: unknown) => e)
    const second = track(sem.acquire(1))
    const error = await sem.acquire(1).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(QueueFullError)
    expect(error).toMatchObject({ code: 'ERR_QUEUE_FULL', maxWaiting: 2 })
    controller.abort()
    await first
    const third = track(sem.acquire(1))
    await settle()
    expect(sem.waiting).toBe(2)
    held.release()
    await second.done
    second.permit!.release()
    await third.done
    third.permit!.release()
    expect([sem.available, sem.waiting]).toEqual([1, 0])
  })

  test('the default queue takes the gateway target of 10 000 waiters', async () => {
    const sem = new SharedSemaphore({ capacity: 1 })
    const held = sem.tryAcquire(1)!
    const waiters = Array.from({ length: 10_000 }, () => sem.acquire(1))
    await settle()
    expect(sem.waiting).toBe(10_000)
    held.release()
    for (const waiter of waiters) (await waiter).release()
    expect([sem.available, sem.waiting]).toEqual([1, 0])
  })
})

describe('owners and reclaim', () => {
  test('every instance sees the same counts; from() gives a new owner id', async () => {
    const sem = new SharedSemaphore({ capacity: 4 })
    const other = SharedSemaphore.from(sem.handle)
    expect([sem.owner, other.owner, other.capacity]).toEqual([0, 1, 4])
    const permit = other.tryAcquire(3)!
    const waiting = track(sem.acquire(2))
    await settle()
    expect([sem.available, other.available, sem.waiting, other.waiting]).toEqual([1, 1, 1, 1])
    permit.release()
    await waiting.done
    expect(waiting.permit?.weight).toBe(2)
  })

  test('reclaim returns exactly what the owner held, cancels its waiters and wakes those that now fit', async () => {
    const sem = new SharedSemaphore({ capacity: 6 })
    const dead = SharedSemaphore.from(sem.handle)
    dead.tryAcquire(2)
    const blocker = sem.tryAcquire(4)!
    // Granted by a release from another owner: counted in the dead owner's ledger all the same.
    const granted = track(dead.acquire(3))
    const stuck = track(dead.acquire(2))
    const survivor = track(sem.acquire(5))
    await settle()
    blocker.release()
    await granted.done
    expect([granted.permit?.weight, sem.available, sem.waiting]).toEqual([3, 1, 2])
    expect(sem.reclaim(dead.owner)).toBe(5)
    await Promise.all([stuck.done, survivor.done])
    expect(stuck.error).toBeInstanceOf(SluiceError)
    expect(stuck.error).toMatchObject({ code: 'ERR_CLOSED' })
    expect([survivor.permit?.weight, sem.available, sem.waiting]).toEqual([5, 1, 0])
    // The reclaimed instance is closed: its permits' release() is a no-op, its acquires fail.
    granted.permit!.release()
    expect(sem.available).toBe(1)
    expect(() => dead.tryAcquire(1)).toThrow(expect.objectContaining({ code: 'ERR_CLOSED' }))
    expect(sem.reclaim(dead.owner)).toBe(0)
    survivor.permit!.release()
    expect(sem.available).toBe(6)
  })

  test('owner ids run out at maxOwners and come back after reclaim', () => {
    const sem = new SharedSemaphore({ capacity: 1, maxOwners: 2 })
    const second = SharedSemaphore.from(sem.handle)
    const message = 'All 2 owner ids of this semaphore are in use (`maxOwners`): reclaim the owners of exited threads'
    expect(() => SharedSemaphore.from(sem.handle)).toThrow(new RangeError(message))
    sem.reclaim(second.owner)
    expect(SharedSemaphore.from(sem.handle).owner).toBe(second.owner)
  })
})

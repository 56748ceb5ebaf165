// Cross-thread hand-offs, scripted step by step with command-driven workers (workers/semaphore-agent.ts):
// 1. reclaim after a crash: worker A holds 3 and queues 2, worker B queues 4 behind it; A is terminated, the
//    main thread reclaims A's owner on 'exit', and B (another thread) gets the 4 permits;
// 2. timeout in a worker while the main thread holds everything: TimeoutError with its code;
// 3. abort in worker C of a heavy head (4) wakes worker D's light waiter (1) queued behind it; D did not barge;
// 4. a waiter on the main thread is woken by a release in a worker;
// 5. FIFO across threads: weighted tickets queued in turn by B, C, D and the main thread are served in ticket
//    order (weights 3–4 of capacity 4, so holders cannot overlap and each takes the next rank while holding).
import { SharedSemaphore } from '../../core/semaphore.ts'
import type { AgentCommand, AgentReport } from './workers/semaphore-agent.ts'
import { exited, nextMessage, runtimeName, spawnWorker } from './semaphore-spawn.ts'
import { runMain } from './_verdict.ts'

type Report<K extends AgentReport['op']> = Extract<AgentReport, { op: K }>

function agent() {
  const worker = spawnWorker('semaphore-agent')
  // Listen from the start: a worker that already exited never emits 'exit' again.
  const gone = exited(worker)
  const send = (command: AgentCommand): void => worker.postMessage(command)
  const expect = <K extends AgentReport['op']>(op: K, id?: string): Promise<Report<K>> =>
    nextMessage<AgentReport>(worker, (m) => m.op === op && (id === undefined || ('id' in m && m.id === id))) as Promise<
      Report<K>
    >
  return { worker, gone, send, expect }
}

async function attach(a: ReturnType<typeof agent>, sem: SharedSemaphore): Promise<number> {
  const attached = a.expect('attached')
  a.send({ op: 'attach', handle: sem.handle })
  return (await attached).owner
}

await runMain(async () => {
  const sem = new SharedSemaphore({ capacity: 4 })
  const [a, b, c, d] = [agent(), agent(), agent(), agent()]
  try {
    // 1. Reclaim after a crash.
    const ownerA = await attach(a, sem)
    await attach(b, sem)
    const triedA = a.expect('tried', 'a3')
    a.send({ op: 'try', id: 'a3', weight: 3 })
    const gotA = (await triedA).got
    const queuedA = a.expect('queued', 'a2')
    a.send({ op: 'acquire', id: 'a2', weight: 2 })
    await queuedA
    const queuedB = b.expect('queued', 'b4')
    const grantedB = b.expect('granted', 'b4')
    b.send({ op: 'acquire', id: 'b4', weight: 4 })
    await queuedB
    const beforeCrash = { available: sem.available, waiting: sem.waiting }
    void a.worker.terminate()
    await a.gone
    const reclaimedWeight = sem.reclaim(ownerA)
    const b4 = await grantedB
    const afterReclaim = { available: sem.available, waiting: sem.waiting }
    const releasedB = b.expect('released', 'b4')
    b.send({ op: 'release', id: 'b4' })
    await releasedB

    // 2. Timeout in a worker.
    await attach(c, sem)
    await attach(d, sem)
    const three = sem.tryAcquire(3)!
    const one = sem.tryAcquire(1)!
    const rejectedC1 = c.expect('rejected', 'c1')
    c.send({ op: 'acquire', id: 'c1', weight: 1, timeoutMs: 50 })
    const timeout = await rejectedC1
    const afterTimeout = { available: sem.available, waiting: sem.waiting }

    // 3. A cancelled heavy head in C wakes D's light waiter.
    one.release()
    const queuedC = c.expect('queued', 'c4')
    c.send({ op: 'acquire', id: 'c4', weight: 4 })
    await queuedC
    const queuedD = d.expect('queued', 'd1')
    const grantedD = d.expect('granted', 'd1')
    d.send({ op: 'acquire', id: 'd1', weight: 1 })
    await queuedD
    const beforeAbort = { available: sem.available, waiting: sem.waiting }
    const rejectedC4 = c.expect('rejected', 'c4')
    c.send({ op: 'abort', id: 'c4' })
    const abort = await rejectedC4
    const d1 = await grantedD
    const releasedD = d.expect('released', 'd1')
    d.send({ op: 'release', id: 'd1' })
    await releasedD
    three.release()

    // 4. A main-thread waiter woken by a worker's release.
    const triedC = c.expect('tried', 'c-all')
    c.send({ op: 'try', id: 'c-all', weight: 4 })
    const gotC = (await triedC).got
    const mainWaiter = sem.acquire(2)
    c.send({ op: 'release', id: 'c-all', afterMs: 20 })
    const mainPermit = await mainWaiter
    const mainGranted = { weight: mainPermit.weight, available: sem.available }
    mainPermit.release()

    // 5. FIFO across threads.
    const rank = new Int32Array(new SharedArrayBuffer(4))
    const all = sem.tryAcquire(4)!
    const plan = [b, c, 'main', d, c, b, 'main', d, b] as const
    const ranks: Promise<number>[] = []
    for (const [index, who] of plan.entries()) {
      const weight = 3 + (index % 2)
      if (who === 'main') {
        ranks.push(
          sem.acquire(weight).then((permit) => {
            const mine = Atomics.add(rank, 0, 1)
            permit.release()
            return mine
          }),
        )
        continue
      }
      const id = `fifo${index}`
      const queued = who.expect('queued', id)
      ranks.push(who.expect('granted', id).then((granted) => granted.rank!))
      who.send({ op: 'acquire', id, weight, rank })
      await queued
    }
    const queuedFifo = sem.waiting
    all.release()
    const fifoRanks = await Promise.all(ranks)

    return {
      runtime: runtimeName(),
      gotA,
      beforeCrash,
      reclaimedWeight,
      grantedB: { weight: b4.weight, available: b4.available },
      afterReclaim,
      timeout: { name: timeout.name, code: timeout.code, elapsedMs: Math.round(timeout.elapsedMs) },
      afterTimeout,
      beforeAbort,
      abort: { name: abort.name, sameReason: abort.sameReason },
      grantedD: d1.weight,
      gotC,
      mainGranted,
      queuedFifo,
      fifoRanks,
      end: { available: sem.available, waiting: sem.waiting },
    }
  } finally {
    for (const { worker } of [a, b, c, d]) void worker.terminate()
    await Promise.all([a.gone, b.gone, c.gone, d.gone])
  }
})

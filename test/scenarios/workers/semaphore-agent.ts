// A worker that does what its parent tells it, one message per step, and reports each outcome: lets a scenario
// script a cross-thread interleaving deterministically (no sleeps: every step waits for the previous report).
import { parentPort } from 'node:worker_threads'
import { SharedSemaphore } from '../../../core/semaphore.ts'
import type { Permit, SemaphoreHandle } from '../../../core/semaphore.ts'

export type AgentCommand =
  | { op: 'attach'; handle: SemaphoreHandle }
  | { op: 'try'; id: string; weight: number }
  | { op: 'acquire'; id: string; weight: number; timeoutMs?: number; rank?: Int32Array }
  | { op: 'abort'; id: string }
  | { op: 'release'; id: string; afterMs?: number }
  | { op: 'notify'; word: Int32Array; afterMs: number }

export type AgentReport =
  | { op: 'attached'; owner: number }
  | { op: 'tried'; id: string; got: boolean }
  | { op: 'queued'; id: string; waiting: number }
  | { op: 'granted'; id: string; weight: number; available: number; rank?: number }
  | { op: 'rejected'; id: string; name: string; code: string | null; sameReason: boolean; elapsedMs: number }
  | { op: 'released'; id: string; available: number }

const port = parentPort!
let sem: SharedSemaphore | undefined
const permits = new Map<string, Permit>()
const aborts = new Map<string, { controller: AbortController; reason: object }>()
const report = (message: AgentReport): void => port.postMessage(message)

port.on('message', (command: AgentCommand) => {
  switch (command.op) {
    case 'attach':
      sem = SharedSemaphore.from(command.handle)
      report({ op: 'attached', owner: sem.owner })
      break
    case 'try': {
      const permit = sem!.tryAcquire(command.weight)
      if (permit) permits.set(command.id, permit)
      report({ op: 'tried', id: command.id, got: permit !== null })
      break
    }
    case 'acquire': {
      const controller = new AbortController()
      const reason = { abortedBy: 'parent', id: command.id }
      aborts.set(command.id, { controller, reason })
      const started = performance.now()
      const options = command.timeoutMs === undefined ? { signal: controller.signal } : { timeoutMs: command.timeoutMs }
      sem!.acquire(command.weight, options).then(
        (permit) => {
          // With `rank`: take the next rank from the shared counter while holding, release at once, then report.
          if (command.rank) {
            const rank = Atomics.add(command.rank, 0, 1)
            permit.release()
            report({ op: 'granted', id: command.id, weight: permit.weight, available: sem!.available, rank })
            return
          }
          permits.set(command.id, permit)
          report({ op: 'granted', id: command.id, weight: permit.weight, available: sem!.available })
        },
        (error: { name?: string; code?: string }) => {
          const elapsedMs = performance.now() - started
          const name = error.name ?? typeof error
          const code = error.code ?? null
          report({ op: 'rejected', id: command.id, name, code, sameReason: error === reason, elapsedMs })
        },
      )
      // acquire() queues synchronously, so the shared count already includes this ticket.
      report({ op: 'queued', id: command.id, waiting: sem!.waiting })
      break
    }
    case 'abort': {
      const entry = aborts.get(command.id)!
      entry.controller.abort(entry.reason)
      break
    }
    case 'release': {
      const release = (): void => {
        permits.get(command.id)!.release()
        report({ op: 'released', id: command.id, available: sem!.available })
      }
      if (command.afterMs === undefined) release()
      else setTimeout(release, command.afterMs)
      break
    }
    case 'notify':
      setTimeout(() => {
        Atomics.store(command.word, 0, 1)
        Atomics.notify(command.word, 0)
      }, command.afterMs)
      break
  }
})

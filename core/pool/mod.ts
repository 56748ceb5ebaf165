/**
 * `sluice/pool`: upstream calls in worker threads (piscina), with the in-process call's contract. Separate from the
 * core entry point because this is the one module that uses `node:worker_threads` (present on Node, Bun and Deno).
 * `createStreamRunner({ workers: 0 })` runs in-process with the same API, so switching is one option.
 * @module
 */
export { createStreamRunner } from './stream-runner.ts'
export type { ManagedStreamRunner } from './stream-runner.ts'
export { createWorkerPool } from './worker-pool.ts'
export type { WorkerPool } from './worker-pool.ts'
export type { StreamRunnerOptions, WorkerPoolOptions } from './pool-options.ts'
export { PoolClosedError, WorkerCrashedError } from './pool-errors.ts'

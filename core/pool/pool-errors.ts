/**
 * Errors of the worker pool, and the rebuilding of a worker's call errors on the main thread. A call rejected in a
 * worker crosses as plain data (./chunk-channel-reason.ts keeps `code` and every primitive field); main rebuilds
 * the same class from `code`, so `instanceof QueueTimeoutError`, `status`, `retryAfterMs` and `timeoutMs` behave
 * exactly as with the in-process client.
 * @module
 */
import { SluiceError } from '../errors.ts'
import {
  IdleTimeoutError,
  QueueTimeoutError,
  UpstreamConnectError,
  UpstreamMalformedError,
  UpstreamStatusError,
  UpstreamTimeoutError,
  UpstreamTruncatedError,
} from '../upstream/errors.ts'
import { reasonFromWire } from './chunk-channel-reason.ts'

/**
 * The worker thread running a call died (exception, `process.exit`, out of memory, terminated) or stopped
 * answering and was terminated. Before the first byte the call rejects with it (502); after, the stream ends
 * with an SSE error event `worker_crashed`. Its message never includes the worker's own error (it may come from
 * user code); that is its `cause`.
 */
export class WorkerCrashedError extends SluiceError {
  readonly status = 502
  readonly retryAfterMs = undefined
  readonly retryable = false
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_WORKER_CRASHED', message, options)
  }
}

/** A call made after `close()` began, or cut by it (503: another instance may take it). */
export class PoolClosedError extends SluiceError {
  readonly status = 503
  readonly retryAfterMs = undefined
  readonly retryable = false
  constructor(message: string) {
    super('ERR_CLOSED', message)
  }
}

interface WireProps {
  message?: unknown
  name?: unknown
  stack?: unknown
  props?: Record<string, unknown>
}

/**
 * Rebuilds an error sent with `reasonToWire` by the other thread: our upstream errors by `code` (their classes),
 * any other sluice code as a SluiceError with its fields (so an SSE error event shows it as `closed`, not
 * `ERR_CLOSED`), anything else as `reasonFromWire` gives it.
 */
export function errorFromWire(wire: unknown): unknown {
  const rebuilt = reasonFromWire(wire)
  if (!(rebuilt instanceof Error) || typeof (rebuilt as { code?: unknown }).code !== 'string') return rebuilt
  const { props = {}, stack } = wire as WireProps
  const error = rebuildUpstreamError(rebuilt, props)
  if (error === undefined) return rebuilt
  if (typeof stack === 'string') Object.defineProperty(error, 'stack', { value: stack, configurable: true })
  return error
}

function rebuildUpstreamError(error: Error, props: Record<string, unknown>): Error | undefined {
  const number = (key: string): number | undefined =>
    typeof props[key] === 'number' ? (props[key] as number) : undefined
  const timeoutMs = number('timeoutMs') ?? 0
  switch ((error as { code?: unknown }).code) {
    case 'ERR_QUEUE_TIMEOUT':
      return new QueueTimeoutError(timeoutMs, number('retryAfterMs') ?? 0, { message: error.message })
    case 'ERR_UPSTREAM_CONNECT':
      return new UpstreamConnectError(error.message)
    case 'ERR_UPSTREAM_STATUS':
      return new UpstreamStatusError(
        number('upstreamStatus') ?? 502,
        number('retryAfterMs'),
        typeof props.body === 'string' ? props.body : '',
      )
    case 'ERR_IDLE_TIMEOUT':
      return new IdleTimeoutError(timeoutMs)
    case 'ERR_TIMEOUT':
      return error.name === 'UpstreamTimeoutError' ? new UpstreamTimeoutError(timeoutMs) : undefined
    case 'ERR_UPSTREAM_TRUNCATED':
      return new UpstreamTruncatedError(error.message)
    case 'ERR_UPSTREAM_MALFORMED':
      return new UpstreamMalformedError(error.message)
    case 'ERR_WORKER_CRASHED':
      return new WorkerCrashedError(error.message)
    case 'ERR_CLOSED':
      return props.status === 503 ? new PoolClosedError(error.message) : sluiceError(error, props)
    default:
      return /^ERR_[A-Z_]+$/.test(String((error as { code?: unknown }).code)) ? sluiceError(error, props) : undefined
  }
}

function sluiceError(error: Error, props: Record<string, unknown>): Error {
  const rebuilt = Object.assign(new SluiceError((error as SluiceError).code, error.message), props)
  rebuilt.name = error.name
  return rebuilt
}

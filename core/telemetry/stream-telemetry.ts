/**
 * One place where lifecycle events become metrics and nanoevents: `record(event)` is the sink. It is
 * constructible on its own so a worker pool can run calls in workers, post their plain events to the main thread
 * and record them there into one set of instruments.
 *
 * Telemetry never breaks a stream: a throwing listener (or a failing metrics SDK) is reported through
 * `onListenerError` and the other listeners still run.
 * @module
 */
import { type Meter, metrics } from '@opentelemetry/api'
import type { Emitter } from 'nanoevents'
import { invalidOption } from '../validate.ts'
import type { PermitGaugeSource } from '../upstream/types.ts'
import { createLifecycleEmitter, guard, type ListenerErrorHandler, reportToConsole } from './event-emitter.ts'
import type { StreamEvent, StreamEvents } from './events.ts'
import { createInstruments } from './instruments.ts'

export interface StreamTelemetryOptions {
  /** Where instruments are created. Default `metrics.getMeter('sluice')` (a no-op until the host installs an SDK). */
  meter?: Meter
  /** Semaphores to observe as the `permits_in_use{semaphore=<key>}` gauge, e.g. `{ stream: semaphore }`. */
  permits?: Record<string, PermitGaugeSource>
  /** Called when a listener or the metrics SDK throws. Default: `console.error`. */
  onListenerError?: ListenerErrorHandler
}

export interface StreamTelemetry {
  /** The sink: records metrics, then emits the event by its type and as `event`. Never throws. */
  record(event: StreamEvent): void
  /** `telemetry.events.on('end', (event) => …)`; `on('event', …)` receives every event. */
  readonly events: Emitter<StreamEvents>
  /** Calls in flight according to the events recorded here (`start` minus `end`). */
  readonly active: number
}

/**
 * Creates a telemetry sink.
 * @example
 * ```ts
 * const telemetry = createStreamTelemetry({ meter: provider.getMeter('sluice'), permits: { stream: semaphore } })
 * telemetry.events.on('end', (event) => log(event.id, event.outcome, event.durationMs))
 * const client = createUpstreamClient({ semaphore, telemetry })
 * ```
 */
export function createStreamTelemetry(options: StreamTelemetryOptions = {}): StreamTelemetry {
  const onListenerError = options.onListenerError ?? reportToConsole
  if (typeof onListenerError !== 'function') invalidOption('onListenerError', 'a function', onListenerError)
  const instruments = createInstruments(options.meter ?? metrics.getMeter('sluice'), options.permits)
  const emitter = createLifecycleEmitter(onListenerError)
  let active = 0
  return {
    record(event) {
      if (event.type === 'start') active++
      else if (event.type === 'end') active--
      guard(onListenerError, event, () => instruments.record(event))
      emitter.emit(event)
    },
    events: emitter.events,
    get active() {
      return active
    },
  }
}

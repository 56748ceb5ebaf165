/**
 * The nanoevents emitter of lifecycle events, with each listener isolated: nanoevents' own `emit` stops at the
 * first listener that throws, and a listener's bug must neither silence the others nor reach the call.
 * @module
 */
import { createNanoEvents, type Emitter } from 'nanoevents'
import type { StreamEvent, StreamEvents } from './events.ts'

export type ListenerErrorHandler = (error: unknown, event: StreamEvent) => void

export interface LifecycleEmitter {
  readonly events: Emitter<StreamEvents>
  /** Calls the listeners of `event.type`, then those of `event`. Never throws. */
  emit(event: StreamEvent): void
}

export function createLifecycleEmitter(onListenerError: ListenerErrorHandler = reportToConsole): LifecycleEmitter {
  const events = createNanoEvents<StreamEvents>()
  const each = (name: keyof StreamEvents, event: StreamEvent): void => {
    const listeners = events.events[name] as ((event: StreamEvent) => void)[] | undefined
    if (!listeners) return
    // A copy: a listener may unsubscribe itself while we iterate.
    for (const listener of [...listeners]) guard(onListenerError, event, () => listener(event))
  }
  return {
    events,
    emit(event) {
      each(event.type, event)
      each('event', event)
    },
  }
}

/** Runs `run`; a throw goes to `onError` (and a throwing `onError` is swallowed: nothing is left to tell). */
export function guard(onError: ListenerErrorHandler, event: StreamEvent, run: () => void): void {
  try {
    run()
  } catch (error) {
    try {
      onError(error, event)
    } catch {}
  }
}

export function reportToConsole(error: unknown, event: StreamEvent): void {
  console.error(`sluice: a listener of the '${event.type}' event of call ${event.id} threw`, error)
}

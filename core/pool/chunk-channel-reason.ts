/**
 * Errors and abort reasons across the thread boundary. Structured clone keeps an Error's name, message and stack
 * but drops every own property — `code`, `status`, `timeoutMs` — on Node 20, Bun 1.4.5 and Deno 2.9.6 (measured),
 * and throws DataCloneError on functions or class instances with private state. So reasons are flattened to a
 * plain record on the way out and rebuilt on the way in, keeping `code` (the discriminant sluice callers branch
 * on, see core/errors.ts) and every other primitive own property.
 * @module
 */

const WIRE_ERROR = 'sluice-error'

interface WireError {
  readonly kind: typeof WIRE_ERROR
  readonly name: string
  readonly message: string
  readonly stack: string | undefined
  readonly props: Record<string, string | number | boolean | null>
}

/** A reason in a form `postMessage` is certain to accept. */
export function reasonToWire(reason: unknown): unknown {
  if (reason instanceof Error) {
    const props: Record<string, string | number | boolean | null> = {}
    for (const [key, value] of Object.entries(reason)) {
      if (value === null || ['string', 'number', 'boolean'].includes(typeof value)) {
        props[key] = value as string | number | boolean | null
      }
    }
    const wire: WireError = { kind: WIRE_ERROR, name: reason.name, message: reason.message, stack: reason.stack, props }
    return wire
  }
  try {
    return structuredClone(reason)
  } catch {
    return String(reason)
  }
}

/**
 * Rebuilds a reason sent by `reasonToWire`. An error comes back as a DOMException when it was one (AbortError,
 * TimeoutError: what `AbortSignal` produces), otherwise as an `Error` with the original name, message, stack and
 * primitive properties (so `error.code` still works; `instanceof` a subclass cannot survive a thread hop).
 */
export function reasonFromWire(wire: unknown): unknown {
  if (!isWireError(wire)) return wire
  const error: Error = wire.name === 'AbortError' || wire.name === 'TimeoutError'
    ? new DOMException(wire.message, wire.name)
    : Object.assign(new Error(wire.message), wire.props)
  // DOMException's name is a getter; setting it on an Error is an own property.
  if (!(error instanceof DOMException)) error.name = wire.name
  if (wire.stack !== undefined) Object.defineProperty(error, 'stack', { value: wire.stack, configurable: true })
  return error
}

function isWireError(value: unknown): value is WireError {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === WIRE_ERROR
}

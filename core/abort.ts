/**
 * Small AbortSignal helpers. Rule (after p-queue): an abort rejects with `signal.reason`, and every listener
 * added is removed in `finally`, so long-lived signals (a server's shutdown signal) do not accumulate listeners.
 * @module
 */

/** Runs `onAbort` once when `signal` aborts; returns a disposer that removes the listener. */
export function onAbort(signal: AbortSignal | undefined, onAbort: (reason: unknown) => void): () => void {
  if (!signal) return noop
  if (signal.aborted) {
    onAbort(signal.reason)
    return noop
  }
  const listener = (): void => onAbort(signal.reason)
  signal.addEventListener('abort', listener, { once: true })
  return () => signal.removeEventListener('abort', listener)
}

/** Resolves after `ms`, or rejects with `signal.reason` as soon as `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason)
      return
    }
    let dispose = noop
    const timer = setTimeout(() => {
      dispose()
      resolve()
    }, ms)
    dispose = onAbort(signal, (reason) => {
      clearTimeout(timer)
      reject(reason)
    })
  })
}

/** `Promise.withResolvers` is missing on Node 20 (added in Node 22). */
export function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void; reject: (reason: unknown) => void } {
  let resolve!: (value: T) => void
  let reject!: (reason: unknown) => void
  const promise = new Promise<T>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

function noop(): void {}

/** Resolves when `promise` settles or after `ms`, whichever comes first (0: at once); never rejects. */
export function settledWithin(promise: Promise<unknown>, ms: number): Promise<void> {
  if (ms <= 0) return Promise.resolve()
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms)
    const done = (): void => {
      clearTimeout(timer)
      resolve()
    }
    void promise.then(done, done)
  })
}

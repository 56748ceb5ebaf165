/**
 * A pending `Atomics.waitAsync` keeps no runtime alive (Node 20: nodejs/node#61941; Bun 1.4; Deno 2.9:
 * denoland/deno#15358 — Deno also never runs the resolution when nothing else is pending). So while anyone in
 * this thread waits, hold a ref'd timer; drop it when the last waiter leaves. Counted, so nested users compose.
 * A timer is the one ref'd handle that exists on all three runtimes without a runtime import.
 * @module
 */

let holders = 0
let timer: ReturnType<typeof setInterval> | undefined

/** Keeps the process alive until the returned function is called (idempotent). */
export function holdAlive(): () => void {
  holders++
  // 2^30 ms (≈12 days): the timer never has to fire, it only has to exist.
  timer ??= setInterval(noop, 2 ** 30)
  let released = false
  return () => {
    if (released) return
    released = true
    if (--holders === 0 && timer !== undefined) {
      clearInterval(timer)
      timer = undefined
    }
  }
}

function noop(): void {}

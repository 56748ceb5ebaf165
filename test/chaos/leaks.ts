/**
 * Leak checks after traffic: everything a stream takes is given back. Each check waits (bounded) for the state it
 * wants instead of sleeping a fixed time, and returns a sentence per leak found (empty: nothing leaked).
 * - the gateway: /healthz `active` 0, /metrics `permits_in_use` 0 and `active_streams` 0;
 * - the upstream: every request's connection closed (`inFlight()` 0), then every TCP connection gone
 *   (`openConnections()` 0 — the gateway's idle keep-alive sockets close within undici's 4 s keep-alive);
 * - the process: still alive, and stderr free of anything (an unhandled rejection or uncaught exception would
 *   print there before killing it; a handler error would print `sluice: handler error`).
 */
import type { TestUpstream } from '../upstream/server.ts'
import { type Binary, metricSum } from './binary.ts'

/** Polls `probe` until it returns true or `timeoutMs` passes; resolves with the last answer. */
export async function eventually(
  probe: () => boolean | Promise<boolean>,
  timeoutMs: number,
  everyMs = 50,
): Promise<boolean> {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    if (await probe()) return true
    if (performance.now() >= deadline) return false
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
}

export interface GatewayState {
  active: number | undefined
  permitsInUse: number | undefined
  activeStreams: number | undefined
}

export async function gatewayState(baseUrl: string): Promise<GatewayState> {
  const health = (await (await fetch(`${baseUrl}/healthz`)).json()) as { active?: number }
  const metrics = await (await fetch(`${baseUrl}/metrics`)).text()
  return {
    active: health.active,
    permitsInUse: metricSum(metrics, 'permits_in_use'),
    activeStreams: metricSum(metrics, 'active_streams'),
  }
}

/** Lines the binary may print on stderr without anything being wrong (its drain messages). */
const EXPECTED_STDERR = [/^sluice: SIG(TERM|INT): draining/, /^sluice: drained, bye$/]

/**
 * Stderr lines that are not the binary's drain messages. With `allowWorkerCrashes` (a soak that crashes workers on
 * purpose), a log entry — a `sluice: …` line and its indented continuation — about ERR_WORKER_CRASHED is expected too:
 * the adapter reports a stream it had to cut because its worker died inside an event.
 */
export function unexpectedStderr(stderr: string, { allowWorkerCrashes = false } = {}): string[] {
  const entries: string[][] = []
  for (const line of stderr.split('\n')) {
    if (line.trim() === '') continue
    const last = entries.at(-1)
    if (last !== undefined && /^[\s}]/.test(line)) last.push(line)
    else entries.push([line])
  }
  return entries
    .filter((entry) => !EXPECTED_STDERR.some((pattern) => pattern.test(entry[0]!)))
    .filter((entry) => !(allowWorkerCrashes && entry.some((line) => line.includes('ERR_WORKER_CRASHED'))))
    .flat()
}

export async function checkLeaks(
  binary: Binary,
  upstream: TestUpstream,
  { settleMs = 10_000, allowWorkerCrashes = false } = {},
): Promise<string[]> {
  const leaks: string[] = []
  if (!binary.alive()) {
    leaks.push(`the gateway died: ${binary.stderr().trim().slice(0, 500)}`)
    return leaks
  }
  let state: GatewayState = { active: undefined, permitsInUse: undefined, activeStreams: undefined }
  const idle = await eventually(async () => {
    state = await gatewayState(binary.url)
    return state.active === 0 && (state.permitsInUse ?? 0) === 0 && (state.activeStreams ?? 0) === 0
  }, settleMs)
  if (!idle) {
    const { active, permitsInUse, activeStreams } = state
    leaks.push(
      `gateway not idle: /healthz active ${active}, permits_in_use ${permitsInUse}, active_streams ${activeStreams}`,
    )
  }
  if (!(await eventually(() => upstream.inFlight() === 0, settleMs))) {
    const open = upstream.requests.filter((record) => record.closedAt === undefined).map((record) => record.id)
    leaks.push(`${open.length} upstream requests never closed: ${open.slice(0, 10).join(', ')}`)
  }
  if (!(await eventually(() => upstream.openConnections() === 0, settleMs))) {
    leaks.push(`${upstream.openConnections()} upstream TCP connections still open`)
  }
  const stderr = unexpectedStderr(binary.stderr(), { allowWorkerCrashes })
  if (stderr.length > 0) leaks.push(`stderr not clean: ${stderr.slice(0, 5).join(' | ').slice(0, 500)}`)
  return leaks
}

/**
 * The chaos soak: the real `sluice` binary in front of the fault-injecting test upstream (run in this process, so
 * its records and open connections are read directly), driven by `lanes` concurrent clients through a seeded
 * stream mix (./stream-mix.ts). Every stream's client outcome is judged against its fault (./classify.ts), the
 * upstream's attempt count against what retries may do, and afterwards nothing may be left behind (./leaks.ts),
 * the resident memory must be back within a bound of the warm baseline, and no secret may appear anywhere the
 * gateway writes. Used by `npm run soak` (./soak.ts) and the CI test (test/chaos.test.ts).
 */
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { type RequestRecord, startUpstream, type TestUpstream } from '../upstream/server.ts'
import { type Binary, startBinary } from './binary.ts'
import { judge } from './classify.ts'
import { runClient } from './client.ts'
import { checkLeaks, eventually, gatewayState, unexpectedStderr } from './leaks.ts'
import { createRng } from './rng.ts'
import {
  createStreamMix,
  type Expectation,
  type Fault,
  FAULTS,
  type MixSettings,
  type StreamPlan,
} from './stream-mix.ts'

/** Kills the worker of every `-crash` stream mid-flight (plain JS: the binary runs from dist/ under Node 20). */
const CRASH_TRANSFORM = fileURLToPath(new URL('../fixtures/transforms/crash-on-marker.mjs', import.meta.url))

export interface SoakOptions {
  seed: number
  /** Stop starting streams after this many (warm-up included)… */
  streams?: number
  /** …or after this long, whichever comes first. */
  durationMs?: number
  /** Concurrent clients; each runs one plan (or one burst) at a time. */
  lanes: number
  /** `--concurrency` of the gateway. */
  concurrency: number
  /** `--workers` of the gateway (0: in-process). */
  workers: number
  queueTimeoutMs: number
  idleTimeoutMs: number
  retries: number
  /** Streams run before the memory baseline is taken (judged like all others). */
  warmupStreams: number
  weights?: MixSettings['weights']
  /** Progress lines (a long soak prints one every `progressEveryMs`). */
  log?: (line: string) => void
  progressEveryMs?: number
}

export interface Violation {
  id: string
  fault: Fault
  outcome: string
  problems: string[]
  model: Record<string, unknown>
  seen: { status: number | undefined; ending: string; events: number; error?: string; tail: string }
  /** For a hung stream: the upstream's view when the client gave up (still open → the gateway never cut it). */
  upstream?: { attempts: number; open: boolean; bytesWritten: number; paused: boolean }
}

export interface MemoryReport {
  /** RSS after the warm-up, once idle. */
  baselineBytes: number
  /** Highest RSS sampled (every second) during the run. */
  peakBytes: number
  /** RSS after the run, once idle. */
  finalBytes: number
  boundBytes: number
  withinBound: boolean
}

export interface SoakReport {
  seed: number
  workers: number
  settings: { lanes: number; concurrency: number; queueTimeoutMs: number; idleTimeoutMs: number; retries: number }
  durationMs: number
  streams: number
  /** Streams whose outcome was overload's (queue timeout, no retry budget), allowed for any fault. */
  overloaded: number
  /** Streams ended by another stream's worker crash (they shared its worker), told so by an error event or 502. */
  collateral: number
  faults: Record<string, number>
  /** Per fault, the streams that got the fault's own outcome (not overload's). */
  ownOutcomes: Record<string, number>
  outcomes: Record<string, number>
  outcomesByFault: Record<string, Record<string, number>>
  violations: number
  violationSamples: Violation[]
  attemptViolations: string[]
  /** Streams that made fewer upstream attempts than planned because overload left no budget (queue timeout). */
  retriesCutShort: number
  /** Streams the pool re-sent to another worker after theirs died before the upstream answered. */
  resentAfterCrash: number
  accessLog: { lines: number; malformed: number; outcomes: Record<string, number> }
  leaks: string[]
  secretLeaks: string[]
  memory: MemoryReport
  exit: { code: number | null; signal: string | null; stderr: string[] }
  notExercised: string[]
}

/**
 * The RSS bound: the warm baseline plus 96 MiB or half the baseline, whichever is larger. After the warm-up the
 * heap has grown to the mix's working size; what stays above that once idle is V8 keeping old-space pages it grew
 * into and malloc keeping freed arenas — both set by the PEAK (up to 24 concurrent events of up to 1 MiB here),
 * not by live data: observed +1 to +35 MiB after 2 000 streams. A leak is proportional to the streams run: one
 * of 48 KiB per stream (a fraction of one stream's events) exceeds the bound within 2 000 streams, and one of
 * 3 KiB within a 10-minute soak (~30 000 streams). A few bytes per stream are not what this bound can see.
 * Each pool worker is one more V8 heap that reaches its working size later than the main one (measured with 2
 * workers: 163 MiB after the 300-stream warm-up, then a flat 240–280 MiB for 14 000 streams), so the bound
 * allows 64 MiB more per worker.
 */
export function memoryBound(baselineBytes: number, workers = 0): number {
  return baselineBytes + Math.max(96 * 1024 * 1024, baselineBytes / 2) + workers * 64 * 1024 * 1024
}

const MAX_SAMPLES = 20

export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const log = options.log ?? (() => {})
  const upstreamKey = `sk-chaos-${randomBytes(16).toString('hex')}`
  const gatewayKey = `gw-chaos-${randomBytes(8).toString('hex')}`
  const secrets = [upstreamKey]
  const upstream = await startUpstream({ apiKey: upstreamKey })
  const accessLog = { lines: 0, malformed: 0, outcomes: {} as Record<string, number> }
  const secretLeaks: string[] = []
  const scan = (where: string, text: string): void => {
    for (const secret of [upstreamKey, gatewayKey]) {
      if (text.includes(secret) && secretLeaks.length < MAX_SAMPLES) secretLeaks.push(`${where}: ${text.slice(0, 200)}`)
    }
  }
  let binary: Binary | undefined
  try {
    binary = await startBinary({
      upstreamKey,
      keepLines: false,
      args: [
        '--upstream',
        upstream.url,
        '--concurrency',
        String(options.concurrency),
        '--queue-timeout',
        `${options.queueTimeoutMs}ms`,
        '--idle-timeout',
        `${options.idleTimeoutMs}ms`,
        '--retries',
        String(options.retries),
        '--workers',
        String(options.workers),
        '--gateway-keys',
        gatewayKey,
        '--drain-timeout',
        '5s',
        ...(options.workers > 0 ? ['--transform', CRASH_TRANSFORM] : []),
      ],
      onLine: (line) => {
        accessLog.lines++
        scan('access log', line)
        try {
          const entry = JSON.parse(line) as { outcome?: unknown; id?: unknown; attempts?: unknown }
          if (typeof entry.outcome !== 'string' || typeof entry.id !== 'string' || typeof entry.attempts !== 'number') {
            accessLog.malformed++
          }
          accessLog.outcomes[String(entry.outcome)] = (accessLog.outcomes[String(entry.outcome)] ?? 0) + 1
        } catch {
          accessLog.malformed++
        }
      },
    })
    return await drive(options, binary, upstream, { secrets, gatewayKey, accessLog, secretLeaks, scan, log })
  } finally {
    if (binary?.alive()) await binary.stop('SIGKILL')
    await upstream.close()
  }
}

interface DriveContext {
  secrets: string[]
  gatewayKey: string
  accessLog: SoakReport['accessLog']
  secretLeaks: string[]
  scan: (where: string, text: string) => void
  log: (line: string) => void
}

async function drive(
  options: SoakOptions,
  binary: Binary,
  upstream: TestUpstream,
  context: DriveContext,
): Promise<SoakReport> {
  const { log, scan } = context
  const rng = createRng(options.seed)
  const mixSettings: MixSettings = {
    idleTimeoutMs: options.idleTimeoutMs,
    queueTimeoutMs: options.queueTimeoutMs,
    concurrency: options.concurrency,
    retries: options.retries,
    // With workers, a few streams crash theirs (the binary loads the crash transform below).
    weights: { ...(options.workers > 0 ? { 'worker-crash': 1 } : {}), ...options.weights },
  }
  const mix = createStreamMix(rng, mixSettings)
  const faults = Object.fromEntries(FAULTS.map((fault) => [fault, 0])) as Record<string, number>
  const outcomes: Record<string, number> = {}
  const outcomesByFault: Record<string, Record<string, number>> = {}
  const violationSamples: Violation[] = []
  let violations = 0
  let overloaded = 0
  let collateral = 0
  const ownOutcomes = Object.fromEntries(FAULTS.map((fault) => [fault, 0])) as Record<string, number>
  // What the upstream's attempt count must be for each judged stream, checked once the run is over.
  const judged: Judged[] = []
  const watchdogMs = Math.max(30_000, options.idleTimeoutMs * 4 + options.queueTimeoutMs * 4)
  const started = performance.now()
  let begun = 0

  const runPlan = async (plan: StreamPlan): Promise<void> => {
    faults[plan.fault] = (faults[plan.fault] ?? 0) + 1
    const seen = await runClient(plan, { baseUrl: binary.url, gatewayKey: context.gatewayKey, watchdogMs })
    const last = seen.ending === 'hung' ? upstream.attempts(plan.id).at(-1) : undefined
    const upstreamView = seen.ending !== 'hung' ? undefined : {
      attempts: upstream.attempts(plan.id).length,
      open: last !== undefined && last.closedAt === undefined,
      bytesWritten: last?.bytesWritten ?? 0,
      paused: last?.paused ?? false,
    }
    const verdict = judge(plan, seen, context.secrets)
    if (verdict.problems.some((problem) => problem.includes('secret'))) scan(`response to ${plan.id}`, seen.text)
    outcomes[verdict.outcome] = (outcomes[verdict.outcome] ?? 0) + 1
    const byFault = (outcomesByFault[plan.fault] ??= {})
    byFault[verdict.outcome] = (byFault[verdict.outcome] ?? 0) + 1
    judged.push({
      id: plan.id,
      fault: plan.fault,
      outcome: verdict.outcome,
      overload: verdict.overload,
      collateral: verdict.collateral === true,
      expect: plan.expect,
    })
    if (verdict.overload) overloaded++
    else if (verdict.collateral) collateral++
    else ownOutcomes[plan.fault] = (ownOutcomes[plan.fault] ?? 0) + 1
    if (verdict.problems.length === 0) return
    violations++
    if (violationSamples.length < MAX_SAMPLES) {
      violationSamples.push({
        id: plan.id,
        fault: plan.fault,
        outcome: verdict.outcome,
        problems: verdict.problems,
        model: plan.fields,
        seen: {
          status: seen.status,
          ending: seen.ending,
          events: seen.events.length,
          ...(seen.error ? { error: seen.error } : {}),
          tail: seen.text.slice(-300),
        },
        ...(upstreamView ? { upstream: upstreamView } : {}),
      })
    }
  }

  const phase = async (limit: number, deadline: number): Promise<void> => {
    const lane = async (): Promise<void> => {
      while (begun < limit && performance.now() < deadline && binary.alive()) {
        const group = mix.next()
        begun += group.length
        await Promise.all(group.map(runPlan))
      }
    }
    await Promise.all(Array.from({ length: options.lanes }, lane))
  }

  const totalStreams = options.streams ?? Number.POSITIVE_INFINITY
  const endAt = started + (options.durationMs ?? Number.POSITIVE_INFINITY)
  const progress = setInterval(() => {
    const seconds = Math.round((performance.now() - started) / 1000)
    log(`[${seconds}s] streams ${judged.length}, violations ${violations}, rss ${mib(safeRss(binary))} MiB`)
  }, options.progressEveryMs ?? 10_000)
  let peakBytes = 0
  const sampler = setInterval(() => (peakBytes = Math.max(peakBytes, safeRss(binary))), 1_000)
  let baselineBytes = 0
  try {
    await phase(Math.min(options.warmupStreams, totalStreams), endAt)
    await quiesce(binary, upstream)
    baselineBytes = binary.rss()
    log(`warm-up done: ${judged.length} streams, baseline rss ${mib(baselineBytes)} MiB`)
    await phase(totalStreams, endAt)
  } finally {
    clearInterval(progress)
    clearInterval(sampler)
  }
  const durationMs = performance.now() - started

  const leaks = await checkLeaks(binary, upstream, { allowWorkerCrashes: options.workers > 0 })
  await quiesce(binary, upstream)
  const finalBytes = binary.alive() ? binary.rss() : 0
  peakBytes = Math.max(peakBytes, finalBytes)
  const boundBytes = memoryBound(baselineBytes, options.workers)
  const memory = { baselineBytes, peakBytes, finalBytes, boundBytes, withinBound: finalBytes <= boundBytes }
  if (binary.alive()) {
    scan('/metrics', await (await fetch(`${binary.url}/metrics`)).text())
    scan('/healthz', await (await fetch(`${binary.url}/healthz`)).text())
  }
  const { problems: attemptViolations, cutShort, resent } = checkAttempts(judged, upstream, options.workers > 0)
  if (context.accessLog.lines < judged.filter((stream) => stream.outcome !== 'client-abort').length) {
    leaks.push(
      `access log has ${context.accessLog.lines} lines for ${judged.length} streams: some calls were never logged`,
    )
  }

  // The graceful stop with nothing in flight: exit 0, stderr only the drain lines.
  const exit = await binary.stop('SIGTERM', 15_000)
  scan('stderr', binary.stderr())
  const stderr = unexpectedStderr(binary.stderr(), { allowWorkerCrashes: options.workers > 0 })
  if (exit.code !== 0) leaks.push(`exit on SIGTERM: ${exit.code ?? exit.signal}`)

  return {
    seed: options.seed,
    workers: options.workers,
    settings: {
      lanes: options.lanes,
      concurrency: options.concurrency,
      queueTimeoutMs: options.queueTimeoutMs,
      idleTimeoutMs: options.idleTimeoutMs,
      retries: options.retries,
    },
    durationMs,
    streams: judged.length,
    overloaded,
    collateral,
    faults,
    ownOutcomes,
    outcomes,
    outcomesByFault,
    violations,
    violationSamples,
    attemptViolations,
    retriesCutShort: cutShort,
    resentAfterCrash: resent,
    accessLog: context.accessLog,
    leaks: memory.withinBound ? leaks : [...leaks, `rss ${mib(finalBytes)} MiB above the bound ${mib(boundBytes)} MiB`],
    secretLeaks: context.secretLeaks,
    memory,
    exit: { code: exit.code, signal: exit.signal, stderr },
    notExercised: options.workers > 0 ? [] : ['worker crashes: in-process runner (--workers 0) has no workers'],
  }
}

/** Waits until nothing is in flight anywhere, then a moment more for the gateway's heap to settle. */
async function quiesce(binary: Binary, upstream: TestUpstream): Promise<void> {
  if (!binary.alive()) return
  await eventually(async () => (await gatewayState(binary.url)).active === 0 && upstream.inFlight() === 0, 15_000)
  await new Promise((resolve) => setTimeout(resolve, 1_000))
}

interface Judged {
  id: string
  fault: Fault
  outcome: string
  overload: boolean
  collateral: boolean
  expect: Expectation
}

/**
 * Retries happen only before the first byte and never duplicate: a stream that completed made exactly the
 * attempts its fault asks for (failTimes + 1, …), a stream that failed after its first chunk made exactly one;
 * one that met overload or left early made at most what was planned, and so may an exhausted one, whose last
 * retry is not made when it would end past the queue budget (then the upstream's status is reported after fewer
 * attempts). `cutShort` counts the streams whose retries overload cut short.
 *
 * With workers, a call whose worker dies before main saw the upstream's answer is re-sent to another worker (once;
 * core/pool/pool-call.ts), which resumes its attempts. The upstream cannot tell the lost attempt from others (it
 * may even have finished writing its answer before the worker read it), so one attempt is discounted for a stream
 * whose attempts span a worker's death — a crash plan's last attempt closing within CRASH_WINDOW_MS of the span —
 * and for no other. A re-send that duplicated output would fail the content checks.
 */
/** How close to a crash plan's cut attempt another attempt must have been cut to count as lost with its worker. */
const CRASH_WINDOW_MS = 250

function checkAttempts(
  judged: Judged[],
  upstream: TestUpstream,
  withWorkers: boolean,
): { problems: string[]; cutShort: number; resent: number } {
  const byId = new Map<string, RequestRecord[]>()
  const crashes: number[] = []
  for (const record of upstream.requests) {
    const records = byId.get(record.id)
    if (records === undefined) byId.set(record.id, [record])
    else records.push(record)
  }
  for (const [id, records] of byId) {
    if (id.endsWith('-crash')) crashes.push(records.at(-1)?.closedAt ?? Number.NaN)
  }
  const spansACrash = (records: RequestRecord[]): boolean => {
    const from = (records[0]?.startedAt ?? Number.NaN) - CRASH_WINDOW_MS
    const to = (records.at(-1)?.startedAt ?? Number.NaN) + CRASH_WINDOW_MS
    return crashes.some((at) => at >= from && at <= to)
  }
  const problems: string[] = []
  let cutShort = 0
  let resent = 0
  for (const { id, fault, outcome, overload, collateral, expect } of judged) {
    const records = byId.get(id) ?? []
    // Attempts lost with a worker: up to this many of the stream's attempts may be ones a re-send made up for.
    const lostToCrash = withWorkers && records.length >= 2 && spansACrash(records) ? 1 : 0
    const planned = 'attempts' in expect ? expect.attempts : 1
    const allowed = (attempts: number): boolean => {
      // A crash plan's worker dies at its third delta, so one with no upstream attempt never got that far: another
      // stream's crash took its worker first (it is collateral, like any other stream on that worker).
      const crashedByAnother = fault === 'worker-crash' && attempts === 0 && outcome === 'http:502:err_worker_crashed'
      if (overload && outcome !== 'queue-timeout' && outcome !== 'error-event:queue_timeout') return attempts < planned
      if (overload || collateral || crashedByAnother || outcome === 'client-abort') return attempts <= planned
      if (outcome.startsWith('error-event:')) return attempts === 1
      if (fault === 'retry-exhaust') return attempts >= 1 && attempts <= planned
      return attempts === planned
    }
    // The re-sent call resumes its attempts (a lost one counts against the retries), so the count that fits the
    // plan may include the lost attempts or not: the highest count the plan allows.
    let attempts: number | undefined
    for (let counted = records.length; counted >= records.length - lostToCrash; counted--) {
      if (allowed(counted)) {
        attempts = counted
        break
      }
    }
    if (lostToCrash > 0 && attempts !== records.length) resent++
    if (attempts === undefined) {
      if (problems.length < MAX_SAMPLES) {
        const lost = lostToCrash > 0 ? ' (one may have been lost with a worker)' : ''
        problems.push(`${id} (${fault}, ${outcome}): ${records.length} upstream attempts${lost}, planned ${planned}`)
      }
      continue
    }
    const crashed = outcome === 'http:502:err_worker_crashed' || outcome === 'error-event:worker_crashed'
    if (attempts < planned && outcome !== 'client-abort' && !crashed) cutShort++
  }
  return { problems, cutShort, resent }
}

function safeRss(binary: Binary): number {
  try {
    return binary.alive() ? binary.rss() : 0
  } catch {
    return 0
  }
}

export function mib(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(1)
}

/** The tally as plain text: what ran, what came out, what leaked. */
export function formatReport(report: SoakReport): string {
  const lines: string[] = []
  const { settings } = report
  lines.push(
    `chaos soak: seed ${report.seed}, workers ${report.workers}, ${settings.lanes} clients, ` +
      `--concurrency ${settings.concurrency}, queue ${settings.queueTimeoutMs} ms, ` +
      `idle ${settings.idleTimeoutMs} ms, retries ${settings.retries}`,
  )
  lines.push(
    `streams run: ${report.streams} in ${(report.durationMs / 1000).toFixed(1)} s ` +
      `(${report.overloaded} met overload: queue timeout or no retry budget left; ` +
      `${report.collateral} shared a worker that another stream crashed, ` +
      `${report.resentAfterCrash} re-sent to another worker after theirs died before the answer)`,
  )
  lines.push('faults:')
  for (const [fault, count] of Object.entries(report.faults)) {
    if (count === 0) continue
    const outcomes = Object.entries(report.outcomesByFault[fault] ?? {}).map(([outcome, n]) => `${outcome} ${n}`).join(
      ', ',
    )
    lines.push(`  ${fault.padEnd(18)} ${String(count).padStart(6)}  → ${outcomes}`)
  }
  lines.push(`outcomes: ${Object.entries(report.outcomes).map(([outcome, n]) => `${outcome} ${n}`).join(', ')}`)
  lines.push(
    `access log: ${report.accessLog.lines} lines (${report.accessLog.malformed} malformed): ` +
      Object.entries(report.accessLog.outcomes).map(([outcome, n]) => `${outcome} ${n}`).join(', '),
  )
  lines.push(`violations: ${report.violations}`)
  for (const sample of report.violationSamples) lines.push(`  ${JSON.stringify(sample)}`)
  lines.push(
    `attempt violations: ${report.attemptViolations.length} ` +
      `(${report.retriesCutShort} streams made fewer attempts than planned: overload spent their queue budget)`,
  )
  for (const problem of report.attemptViolations) lines.push(`  ${problem}`)
  const { memory } = report
  lines.push(
    `memory: baseline ${mib(memory.baselineBytes)} MiB, peak ${mib(memory.peakBytes)} MiB, ` +
      `final ${mib(memory.finalBytes)} MiB, bound ${mib(memory.boundBytes)} MiB (${
        memory.withinBound ? 'ok' : 'EXCEEDED'
      })`,
  )
  lines.push(`leaks found: ${report.leaks.length}`)
  for (const leak of report.leaks) lines.push(`  ${leak}`)
  lines.push(`secret leaks: ${report.secretLeaks.length}`)
  for (const leak of report.secretLeaks) lines.push(`  ${leak}`)
  lines.push(
    `exit on SIGTERM: ${report.exit.code ?? report.exit.signal}, unexpected stderr lines: ${report.exit.stderr.length}`,
  )
  for (const line of report.exit.stderr.slice(0, 10)) lines.push(`  ${line}`)
  for (const note of report.notExercised) lines.push(`not exercised: ${note}`)
  lines.push(`seed ${report.seed} (replay: npm run soak -- --seed ${report.seed})`)
  return lines.join('\n')
}

/** True when nothing went wrong: no violation, no leak, no secret seen, clean exit. */
export function soakPassed(report: SoakReport): boolean {
  return report.violations === 0 && report.attemptViolations.length === 0 && report.leaks.length === 0 &&
    report.secretLeaks.length === 0 && report.exit.code === 0 && report.exit.stderr.length === 0 &&
    report.accessLog.malformed === 0
}

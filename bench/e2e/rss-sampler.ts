/**
 * Samples a process's resident memory from /proc/<pid>/status (Linux only) on a timer, so the load generator can
 * report the target's peak RSS under load and its idle RSS before it. VmRSS covers every thread, so a gateway
 * running its streams in worker threads is measured whole.
 * @module
 */
import { readFileSync } from 'node:fs'

/** VmRSS in bytes, or undefined if the process is gone or /proc is unavailable. */
export function readRssBytes(pid: number): number | undefined {
  let status: string
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8')
  } catch {
    return undefined
  }
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status)
  return match ? Number(match[1]) * 1024 : undefined
}

export interface RssSampler {
  /** Highest VmRSS seen so far (bytes), NaN if no sample succeeded. */
  readonly peak: number
  readonly samples: number
  stop(): void
}

export function startRssSampler(pid: number, intervalMs = 50): RssSampler {
  let peak = Number.NaN
  let samples = 0
  const sample = (): void => {
    const rss = readRssBytes(pid)
    if (rss === undefined) return
    samples++
    if (!(rss <= peak)) peak = rss
  }
  sample()
  const timer = setInterval(sample, intervalMs)
  timer.unref()
  return {
    get peak() {
      return peak
    },
    get samples() {
      return samples
    },
    stop() {
      clearInterval(timer)
      sample()
    },
  }
}

/** Idle RSS: the median of a few samples spaced out, so one allocation spike does not pass for the baseline. */
export async function idleRss(pid: number, samples = 5, intervalMs = 20): Promise<number> {
  const values: number[] = []
  for (let i = 0; i < samples; i++) {
    const rss = readRssBytes(pid)
    if (rss !== undefined) values.push(rss)
    if (i < samples - 1) await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
  values.sort((a, b) => a - b)
  return values.length === 0 ? Number.NaN : values[values.length >> 1]!
}

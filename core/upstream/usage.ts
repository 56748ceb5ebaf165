/**
 * Built-in usage counting per stream, reported in the `end` lifecycle event (and so in the binary's access log).
 * It reads the JSON the forwarder already parsed to validate each event, so it costs no extra parse:
 * - the upstream's own `usage` object wins when it sends one (OpenAI sends it in the last chunk when the request
 *   has `stream_options: { include_usage: true }`; many compatible servers always do);
 * - otherwise the non-empty `choices[].delta.content` deltas are counted. OpenAI-style streams carry about one
 *   token per delta, so this is an estimate of completion tokens, labelled `source: 'counted'`.
 * @module
 */

/** Token usage of one stream. */
export interface StreamUsage {
  /** `upstream`: the upstream's own `usage` object; `counted`: content deltas counted by sluice (an estimate). */
  source: 'upstream' | 'counted'
  /** Prompt tokens (only the upstream knows them). */
  promptTokens: number | undefined
  /** Completion tokens: the upstream's figure, or the number of non-empty content deltas. */
  completionTokens: number
  /** Total tokens (only the upstream knows them). */
  totalTokens: number | undefined
}

interface OpenAiUsage {
  prompt_tokens?: unknown
  completion_tokens?: unknown
  total_tokens?: unknown
}

export class UsageCounter {
  #events = 0
  #deltas = 0
  #upstream: OpenAiUsage | undefined

  /** One parsed upstream data event (the JSON value of its `data`). */
  observe(json: unknown): void {
    this.#events++
    if (typeof json !== 'object' || json === null) return
    const { usage, choices } = json as { usage?: unknown; choices?: unknown }
    if (typeof usage === 'object' && usage !== null && typeof (usage as OpenAiUsage).completion_tokens === 'number') {
      this.#upstream = usage as OpenAiUsage
    }
    if (!Array.isArray(choices)) return
    for (const choice of choices as { delta?: { content?: unknown } }[]) {
      const content = choice?.delta?.content
      if (typeof content === 'string' && content.length > 0) this.#deltas++
    }
  }

  /** The usage so far; undefined when no data event was seen. */
  result(): StreamUsage | undefined {
    if (this.#events === 0) return undefined
    const upstream = this.#upstream
    if (upstream === undefined) {
      return { source: 'counted', promptTokens: undefined, completionTokens: this.#deltas, totalTokens: undefined }
    }
    return {
      source: 'upstream',
      promptTokens: numberOrUndefined(upstream.prompt_tokens),
      completionTokens: upstream.completion_tokens as number,
      totalTokens: numberOrUndefined(upstream.total_tokens),
    }
  }
}

function numberOrUndefined(value: unknown): number | undefined {
  return typeof value === 'number' ? value : undefined
}

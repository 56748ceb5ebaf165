/**
 * What the gateway needs from whatever runs upstream calls: the in-process upstream client and the worker pool
 * both satisfy it, so switching between them is one option.
 * @module
 */
import type { UpstreamClient } from '../upstream/client.ts'

export type { CallOptions, UpstreamRequest } from '../upstream/types.ts'

export interface StreamRunner extends Pick<UpstreamClient, 'stream' | 'complete' | 'active'> {
  /**
   * Releases the runner's resources (worker threads); the in-process client has none. Calls still in flight after
   * `timeoutMs` are aborted.
   */
  close?(options?: { timeoutMs?: number }): Promise<void>
}

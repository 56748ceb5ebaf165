/**
 * The OpenAI-compatible streaming gateway as a standard fetch handler: Bun's `serve({ fetch: gateway.fetch })`,
 * Deno's `serve(gateway.fetch)` and sluice's Node adapter all serve it unchanged.
 *
 * Order of checks for an API request (cheapest refusal first, nothing buffered before it is needed):
 * route → method → draining → gateway key → content type → body (limit enforced while reading) → JSON/fields.
 * The upstream URL and credentials come only from config; no client header is forwarded upstream.
 * @module
 */
import { createGatewayKeyCheck } from './auth.ts'
import { parseChatRequest } from './chat-request.ts'
import { errorResponse, HttpError } from './http-error.ts'
import { readBodyText } from './read-body.ts'
import type { StreamRunner, UpstreamRequest } from './runner.ts'
import { positiveInteger } from '../validate.ts'

export interface GatewayOptions {
  /** Upstream base URL including `/v1`, e.g. `https://api.openai.com/v1`. */
  upstreamUrl: string
  /** Added as `Authorization: Bearer <key>` on upstream requests; never echoed. */
  upstreamKey?: string
  /** Runs the upstream calls (in-process client or worker pool). */
  runner: StreamRunner
  /** Request body limit in bytes. Default 1 MiB. */
  bodyLimitBytes?: number
  /** If non-empty, clients must send `Authorization: Bearer <one of these>`. */
  gatewayKeys?: readonly string[]
  /** Forward other `/v1/*` routes to the upstream (buffered, same limits). Default false → 404. */
  passThrough?: boolean
  /** Prometheus exposition for `GET /metrics`; without it the route is 404. */
  metrics?: { collect(): Promise<string>; contentType: string }
}

export interface Gateway {
  fetch(request: Request): Promise<Response>
  /** Stop admitting API requests: they get 503, `/healthz` turns 503; live streams continue. */
  drain(): void
  /**
   * Drain, wait for live calls to finish up to `timeoutMs`, then end the rest with an error event;
   * then close the runner. Resolves when nothing is in flight.
   */
  close(options?: { timeoutMs?: number }): Promise<void>
  readonly draining: boolean
}

const CHAT_PATHS = new Set(['/v1/chat/completions', '/v1/chat/completions/stream'])
const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' }

export function createGateway(options: GatewayOptions): Gateway {
  const upstreamUrl = validateUpstreamUrl(options.upstreamUrl)
  const bodyLimitBytes = positiveInteger('bodyLimitBytes', options.bodyLimitBytes ?? 1024 * 1024)
  const keys = options.gatewayKeys ?? []
  const keyCheck = keys.length > 0 ? createGatewayKeyCheck(keys) : undefined
  const { runner, metrics, upstreamKey } = options
  const shutdown = new AbortController()
  let draining = false

  const upstreamHeaders = (stream: boolean): Record<string, string> => ({
    'content-type': 'application/json',
    accept: stream ? 'text/event-stream' : 'application/json',
    ...(upstreamKey ? { authorization: `Bearer ${upstreamKey}` } : {}),
  })

  async function handleChat(request: Request, path: string): Promise<Response> {
    if (keyCheck) await keyCheck.verify(request)
    requireJson(request)
    const chat = parseChatRequest(await readBodyText(request, bodyLimitBytes))
    // The legacy streaming path always streams, whatever the body says.
    const legacy = path.endsWith('/stream')
    const stream = legacy || chat.stream
    const body = legacy && !chat.stream ? JSON.stringify({ ...JSON.parse(chat.text), stream: true }) : chat.text
    const upstreamRequest: UpstreamRequest = { url: `${upstreamUrl}/chat/completions`, method: 'POST', headers: upstreamHeaders(stream), body }
    const runOptions = { signal: request.signal, shutdownSignal: shutdown.signal }
    const response = stream ? await runner.stream(upstreamRequest, runOptions) : await runner.complete(upstreamRequest, runOptions)
    if (!response.ok) return passThroughError(response, upstreamKey)
    if (!stream) return new Response(response.body, { status: 200, headers: { 'content-type': 'application/json' } })
    return new Response(response.body, { status: 200, headers: SSE_HEADERS })
  }

  async function handlePassThrough(request: Request, path: string): Promise<Response> {
    if (keyCheck) await keyCheck.verify(request)
    const hasBody = request.method !== 'GET' && request.method !== 'HEAD'
    const body = hasBody ? await readBodyText(request, bodyLimitBytes) : undefined
    const search = new URL(request.url).search
    const upstreamRequest: UpstreamRequest = {
      url: `${upstreamUrl}${path.slice('/v1'.length)}${search}`,
      method: request.method,
      headers: upstreamHeaders(false),
      ...(body === undefined ? {} : { body }),
    }
    const response = await runner.complete(upstreamRequest, { signal: request.signal })
    if (!response.ok) return passThroughError(response, upstreamKey)
    return new Response(response.body, { status: response.status, headers: { 'content-type': response.headers.get('content-type') ?? 'application/json' } })
  }

  async function route(request: Request): Promise<Response> {
    const path = new URL(request.url).pathname
    if (path === '/healthz') {
      allowMethods(request, ['GET', 'HEAD'])
      return Response.json({ status: draining ? 'draining' : 'ok', active: runner.active }, { status: draining ? 503 : 200, headers: { 'cache-control': 'no-store' } })
    }
    if (path === '/metrics') {
      allowMethods(request, ['GET'])
      if (!metrics) throw new HttpError(404, 'not_found', 'Metrics are not enabled on this gateway')
      return new Response(await metrics.collect(), { headers: { 'content-type': metrics.contentType, 'cache-control': 'no-store' } })
    }
    const isChat = CHAT_PATHS.has(path)
    if (!isChat && !(options.passThrough && path.startsWith('/v1/'))) {
      throw new HttpError(404, 'not_found', `No route for ${request.method} ${path}`)
    }
    if (isChat) allowMethods(request, ['POST'])
    if (draining) {
      throw new HttpError(503, 'server_draining', 'The gateway is shutting down; retry on another instance', { headers: { 'retry-after': '1' } })
    }
    return isChat ? handleChat(request, path) : handlePassThrough(request, path)
  }

  return {
    async fetch(request) {
      try {
        return await route(request)
      } catch (error) {
        // Drain whatever the client still sends so keep-alive connections stay usable (the adapter bounds it).
        if (request.body && !request.bodyUsed) request.body.cancel().catch(() => {})
        return errorResponse(toHttpError(error, upstreamKey))
      }
    },
    drain() {
      draining = true
    },
    async close({ timeoutMs = 30_000 } = {}) {
      draining = true
      const deadline = Date.now() + timeoutMs
      while (runner.active > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
      if (runner.active > 0) {
        shutdown.abort(new HttpError(503, 'server_shutdown', 'The gateway shut down before the stream finished'))
        const hardDeadline = Date.now() + 5_000
        while (runner.active > 0 && Date.now() < hardDeadline) await new Promise((resolve) => setTimeout(resolve, 10))
      }
      // Everything live was given its chance above; a worker pool only needs to wind down now.
      await runner.close?.({ timeoutMs: 1_000 })
    },
    get draining() {
      return draining
    },
  }
}

function validateUpstreamUrl(value: unknown): string {
  let url: URL | undefined
  try {
    url = typeof value === 'string' ? new URL(value) : undefined
  } catch {}
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new TypeError(`Expected \`upstreamUrl\` to be an absolute http(s) URL, got \`${String(value)}\` (${typeof value})`)
  }
  return url.href.replace(/\/+$/, '')
}

function allowMethods(request: Request, methods: string[]): void {
  if (!methods.includes(request.method)) {
    throw new HttpError(405, 'method_not_allowed', `${request.method} is not allowed here; use ${methods.join(' or ')}`, {
      headers: { allow: methods.join(', ') },
    })
  }
}

function requireJson(request: Request): void {
  const type = request.headers.get('content-type') ?? ''
  if (!/^application\/json\s*(;|$)/i.test(type)) {
    throw new HttpError(415, 'unsupported_media_type', `Expected Content-Type: application/json, got \`${type || '(none)'}\``)
  }
}

/**
 * Errors thrown by the runner before any byte carry an HTTP `status` (queue timeout 503, upstream 502…). Their
 * message may quote the upstream's error body (UpstreamStatusError after the last retry), so the upstream key is
 * scrubbed from it as from a passed-through 4xx body.
 */
function toHttpError(error: unknown, upstreamKey: string | undefined): unknown {
  if (error instanceof HttpError || typeof error !== 'object' || error === null) return error
  const { status, code, message, retryAfterMs } = error as { status?: unknown; code?: unknown; message?: unknown; retryAfterMs?: unknown }
  if (typeof status !== 'number' || status < 400 || status > 599) return error
  const headers: Record<string, string> = typeof retryAfterMs === 'number' ? { 'retry-after': String(Math.max(1, Math.ceil(retryAfterMs / 1000))) } : {}
  const text = typeof message !== 'string' ? 'Upstream error' : upstreamKey ? message.replaceAll(upstreamKey, '[redacted]') : message
  return new HttpError(status, typeof code === 'string' ? code.toLowerCase() : 'upstream_error', text, {
    // OpenAI's own type for 429, so SDKs map it to RateLimitError.
    type: status === 429 ? 'rate_limit_error' : status >= 500 ? 'server_error' : 'invalid_request_error',
    headers,
  })
}

/** An upstream 4xx passes through with its status and body; the upstream key is scrubbed if the body echoes it. */
async function passThroughError(response: Response, upstreamKey: string | undefined): Promise<Response> {
  let text = await response.text()
  if (upstreamKey) text = text.replaceAll(upstreamKey, '[redacted]')
  const retryAfter = response.headers.get('retry-after')
  return new Response(text, {
    status: response.status,
    headers: { 'content-type': response.headers.get('content-type') ?? 'application/json', ...(retryAfter ? { 'retry-after': retryAfter } : {}) },
  })
}


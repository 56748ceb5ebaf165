/**
 * Client-facing errors of the gateway, rendered as OpenAI-shaped JSON bodies
 * (`{"error":{"message","type","code"}}`) so OpenAI SDKs surface them as APIError with the right fields.
 * @module
 */

/** An error that maps to one HTTP status and a JSON body. `code` is the stable discriminant. */
export class HttpError extends Error {
  readonly status: number
  readonly type: string
  readonly code: string
  readonly headers: Record<string, string>
  constructor(status: number, code: string, message: string, options: { type?: string; headers?: Record<string, string>; cause?: unknown } = {}) {
    super(message, { cause: options.cause })
    this.name = 'HttpError'
    this.status = status
    this.code = code
    this.type = options.type ?? (status >= 500 ? 'server_error' : 'invalid_request_error')
    this.headers = options.headers ?? {}
  }
}

/** The JSON error response for `error` (any other thrown value becomes a generic 500). */
export function errorResponse(error: unknown): Response {
  const http = error instanceof HttpError ? error : new HttpError(500, 'internal_error', 'Internal Server Error')
  return jsonError(http.status, http.message, http.type, http.code, http.headers)
}

export function jsonError(status: number, message: string, type: string, code: string, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify({ error: { message, type, code } }), {
    status,
    headers: { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers },
  })
}

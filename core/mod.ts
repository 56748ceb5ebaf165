/**
 * sluice core: runtime-free (Web APIs only) streaming gateway primitives.
 * @module
 */
export { SluiceError, TimeoutError } from './errors.ts'
export type { SluiceErrorCode } from './errors.ts'
export { RateLimitTimeoutError } from './errors.ts'
export { SharedRateLimiter } from './rate-limiter.ts'
export { QueueFullError } from './errors.ts'
export { SharedSemaphore } from './semaphore.ts'
export type { Permit, SemaphoreAcquireOptions, SemaphoreHandle, SharedSemaphoreOptions } from './semaphore.ts'
export type { RateLimiterAcquireOptions, SharedRateLimiterHandle, SharedRateLimiterOptions } from './rate-limiter.ts'
export type { CloseOptions, FetchHandler, Serve, ServeOptions, Server, ServerAddress, ServerRuntime } from './server.ts'
export { createUpstreamClient } from './upstream/client.ts'
export type { UpstreamClient } from './upstream/client.ts'
export type { UpstreamClientOptions } from './upstream/options.ts'
export type { RetryOptions } from './upstream/retry-policy.ts'
export type { UpstreamEventHook } from './upstream/sse-forwarder.ts'
// The transform module contract (the worker pool, in core/pool/, loads such modules) and the end event's usage.
export type {
  EventRewrite,
  StreamTransform,
  TransformContext,
  TransformEvent,
  TransformFactory,
} from './upstream/transform.ts'
export type { StreamUsage } from './upstream/usage.ts'
// `Permit` is exported from semaphore.ts (above): it satisfies upstream's structural `Permit` ({ release(): void }).
export type { AcquireOptions, CallOptions, PermitGaugeSource, PermitSource, TokenSource, UpstreamRequest } from './upstream/types.ts'
export {
  IdleTimeoutError,
  QueueTimeoutError,
  UpstreamConnectError,
  UpstreamMalformedError,
  UpstreamStatusError,
  UpstreamTimeoutError,
  UpstreamTruncatedError,
} from './upstream/errors.ts'
export type { UpstreamCallError } from './upstream/errors.ts'
export { createStreamTelemetry } from './telemetry/stream-telemetry.ts'
export type { StreamTelemetry, StreamTelemetryOptions } from './telemetry/stream-telemetry.ts'
export type {
  AcquireEvent,
  CallErrorEvent,
  CallKind,
  CallOutcome,
  DisconnectEvent,
  EndEvent,
  FirstChunkEvent,
  RetryEvent,
  StartEvent,
  StreamEvent,
  StreamEventSink,
  StreamEvents,
} from './telemetry/events.ts'
export { createGateway } from './gateway/gateway.ts'
export type { Gateway, GatewayOptions } from './gateway/gateway.ts'
export { createGatewayFromConfig } from './gateway/from-config.ts'
export type { ConfiguredGateway, GatewayConfig, GatewayFromConfigOptions } from './gateway/from-config.ts'
export type { StreamRunner } from './gateway/runner.ts'
export { HttpError } from './gateway/http-error.ts'
export { createPrometheusMetrics } from './metrics/prometheus.ts'
export type { PrometheusMetrics } from './metrics/prometheus.ts'
export { createDemoUpstream } from './demo-upstream.ts'
export type { DemoUpstreamOptions, FetchLike } from './demo-upstream.ts'
export { parseByteSize, parseDuration, parseRate } from './units.ts'

/**
 * Prometheus text exposition of sluice's OpenTelemetry metrics, via the OpenTelemetry SDK: a MeterProvider with a
 * pull reader, serialised by the OpenTelemetry Prometheus exporter's own serializer (the format is never hand-written).
 *
 * Only `PrometheusSerializer` is imported, by its file path: the exporter package's index also loads
 * `PrometheusExporter`, which imports `http` and starts a server of its own — not wanted in a runtime-free core
 * whose /metrics route is served by the gateway on any runtime. The package has no `exports` map, so the path is
 * public API of the build layout; the test suite imports through this module on all three runtimes.
 * @module
 */
import type { Meter } from '@opentelemetry/api'
import { AggregationTemporality, MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics'
import { PrometheusSerializer } from '@opentelemetry/exporter-prometheus/build/src/PrometheusSerializer.js'

/** A reader that only collects when asked (Prometheus pulls). */
class PullMetricReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE })
  }
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

export interface PrometheusMetrics {
  /** The meter to hand to sluice (and to your own instruments). */
  readonly meter: Meter
  readonly meterProvider: MeterProvider
  /** `text/plain; version=0.0.4` exposition of everything recorded so far. */
  collect(): Promise<string>
  readonly contentType: string
  shutdown(): Promise<void>
}

/** Creates an SDK MeterProvider whose metrics can be scraped as Prometheus text. */
export function createPrometheusMetrics({ meterName = 'sluice' }: { meterName?: string } = {}): PrometheusMetrics {
  const reader = new PullMetricReader()
  const meterProvider = new MeterProvider({ readers: [reader] })
  // No otel_scope_* labels and no target_info series: one scope (sluice) and no resource worth a series.
  const serializer = new PrometheusSerializer(undefined, false, undefined, true, true)
  return {
    meter: meterProvider.getMeter(meterName),
    meterProvider,
    contentType: 'text/plain; version=0.0.4; charset=utf-8',
    async collect() {
      const { resourceMetrics, errors } = await reader.collect()
      if (errors.length > 0) throw new AggregateError(errors, 'metric collection failed')
      return serializer.serialize(resourceMetrics)
    },
    shutdown: () => meterProvider.shutdown(),
  }
}

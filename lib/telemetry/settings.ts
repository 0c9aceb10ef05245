/** What postage-ts records through OpenTelemetry. */
export interface TelemetryOptions {
  /**
   * Spans per publish, per handled delivery and per RPC call. Turn them off
   * beside `@opentelemetry/instrumentation-amqplib`, which makes its own for
   * the same publishes and deliveries (or turn its off: one of the two). The
   * trace context still travels in the messages either way.
   * @default true
   */
  spans?: boolean;
  /** The `postage.*` counters and histograms. @default true */
  metrics?: boolean;
}

/** The settings now. @internal */
export const telemetry = { spans: true, metrics: true };

/**
 * Chooses what postage-ts records through OpenTelemetry. Either way nothing is
 * recorded until the application registers an SDK: postage-ts depends on
 * `@opentelemetry/api` alone.
 */
export function configureTelemetry(options: TelemetryOptions): void {
  if (options.spans !== undefined) telemetry.spans = options.spans;
  if (options.metrics !== undefined) telemetry.metrics = options.metrics;
}

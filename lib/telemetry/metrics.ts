import {
  createNoopMeter,
  metrics,
  type Counter,
  type Histogram,
  type Meter,
  type MeterProvider,
  type UpDownCounter,
} from '@opentelemetry/api';
import { telemetry } from './settings.js';

/** The instruments postage-ts records to (no-ops until the application registers a MeterProvider). */
export interface Instruments {
  /** Messages published and confirmed, by exchange and message name. */
  sent: Counter;
  /** Deliveries whose handlers ran to the end. */
  handled: Counter;
  /** Deliveries whose handlers failed (rejected, or sent to the error exchange). */
  failed: Counter;
  /** Deliveries rejected without a handler failing: malformed, RejectMessage, over the delivery limit. */
  rejected: Counter;
  /** How long a delivery's handlers ran, in seconds. */
  handlerDuration: Histogram;
  /** An RPC call's round trip, retries included, in seconds. */
  rpcDuration: Histogram;
  /** Deliveries being handled now. */
  inFlight: UpDownCounter;
  /** Partitions a replica took up or let go of (a partitioned processor's rebalancing), by queue and direction. */
  partitionMoves: Counter;
}

let cached: { provider: MeterProvider; instruments: Instruments | undefined } | undefined;

/**
 * The instruments of the MeterProvider registered now (an application may
 * register one after importing postage-ts), or undefined when nothing would
 * record them: no provider, or metrics turned off. Callers skip the work then.
 */
export function instruments(): Instruments | undefined {
  if (!telemetry.metrics) return undefined;
  const provider = metrics.getMeterProvider();
  if (cached?.provider === provider) return cached.instruments;
  const meter = provider.getMeter('postage-ts');
  const made = meter === createNoopMeter() ? undefined : make(meter);
  cached = { provider, instruments: made };
  return made;
}

function make(meter: Meter): Instruments {
  return {
    sent: meter.createCounter('postage.messages.sent', {
      description: 'Messages published and confirmed by the broker',
    }),
    handled: meter.createCounter('postage.messages.handled', {
      description: 'Deliveries whose handlers ran to the end',
    }),
    failed: meter.createCounter('postage.messages.failed', { description: 'Deliveries whose handlers failed' }),
    rejected: meter.createCounter('postage.messages.rejected', {
      description: 'Deliveries rejected: malformed, RejectMessage, or delivered too often',
    }),
    handlerDuration: meter.createHistogram('postage.handler.duration', {
      description: "How long a delivery's handlers ran",
      unit: 's',
    }),
    rpcDuration: meter.createHistogram('postage.rpc.duration', {
      description: "An RPC call's round trip, retries included",
      unit: 's',
    }),
    inFlight: meter.createUpDownCounter('postage.deliveries.in_flight', {
      description: 'Deliveries being handled now',
    }),
    partitionMoves: meter.createCounter('postage.partitions.moves', {
      description: 'Partitions a replica took up or let go of',
    }),
  };
}

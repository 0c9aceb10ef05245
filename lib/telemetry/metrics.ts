import {
  createNoopMeter,
  metrics,
  type Counter,
  type Histogram,
  type Meter,
  type MeterProvider,
  type ObservableGauge,
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
  /** With `store`: outbox rows waiting to be published, by processor, as its last sweep saw them. */
  outboxWaiting: ObservableGauge;
  /** With `store`: how long the oldest waiting outbox row has waited, in seconds. */
  outboxOldestAge: ObservableGauge;
  /** With `store`: outbox rows given up on (the broker refused them past the limit); they need an operator. */
  outboxFailed: ObservableGauge;
}

/** What one processor's outbox holds now, for the backlog gauges; undefined before its first sweep. */
type BacklogSource = () => { waiting: number; oldestMs: number; failed: number } | undefined;

/** The outboxes the backlog gauges read, by processor name; read by one callback when the metrics are collected. */
const outboxes = new Map<BacklogSource, string>();

/**
 * Reports a processor's outbox backlog to the `postage.outbox.*` gauges until
 * the returned function is called (its relay stopped). @internal
 */
export function observeOutbox(component: string, backlog: BacklogSource): () => void {
  outboxes.set(backlog, component);
  instruments(); // the gauges exist once a MeterProvider is registered, with or without a delivery yet
  return () => outboxes.delete(backlog);
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
  const made: Instruments = {
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
    outboxWaiting: meter.createObservableGauge('postage.outbox.waiting', {
      description: 'Outbox rows waiting to be published',
    }),
    outboxOldestAge: meter.createObservableGauge('postage.outbox.oldest_age', {
      description: 'How long the oldest waiting outbox row has waited',
      unit: 's',
    }),
    outboxFailed: meter.createObservableGauge('postage.outbox.failed', {
      description: 'Outbox rows given up on: the broker refused them past the limit',
    }),
  };
  meter.addBatchObservableCallback(
    (r) => {
      for (const [backlog, component] of outboxes) {
        const b = backlog();
        if (!b) continue;
        const at = { 'postage.component': component };
        r.observe(made.outboxWaiting, b.waiting, at);
        r.observe(made.outboxOldestAge, b.oldestMs / 1000, at);
        r.observe(made.outboxFailed, b.failed, at);
      }
    },
    [made.outboxWaiting, made.outboxOldestAge, made.outboxFailed],
  );
  return made;
}

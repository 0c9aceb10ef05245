/**
 * A processor's `store` and OpenTelemetry: what a run sends is written to the
 * outbox and published after the commit, by the relay or, when the process
 * did not, by a sweeper later; either way the publish is a child of the run's
 * span, and the receiver's span a child of the publish.
 */
import { expect } from 'chai';
import { context, propagation, SpanKind, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  type ReadableSpan,
} from '@opentelemetry/sdk-trace-base';
import type pg from 'pg';
import {
  currentDelivery,
  type ExchangeObject,
  GenericProducer,
  MessageHandler,
  MessageProcessor,
  type MessageSender,
} from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { PostgresStore } from '../../lib/stores/postgres/index.js';
import { brokerUrl } from '../support/broker.js';
import { deferred, Harness } from '../support/components.js';
import { deleteTopology, unique } from '../support/topology.js';
import { until, within } from '../support/wait.js';
import { dropSchema, pgPool, uniqueSchema } from './support.js';

const quiet = makeLogger('silent');

/** What the downstream processor saw of the message: its id and the trace context it carried. */
interface Received {
  messageId: string;
  traceparent: string;
}

describe('PostgresStore and OpenTelemetry', function () {
  this.timeout(30_000);
  const exporter = new InMemorySpanExporter();
  let tracerProvider: BasicTracerProvider;
  let pool: pg.Pool;
  let url: string;
  let h: Harness;
  const schemas: string[] = [];
  let input: ExchangeObject;
  let output: ExchangeObject;

  before(async () => {
    url = await brokerUrl();
    pool = await pgPool();
    tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    trace.setGlobalTracerProvider(tracerProvider);
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  });
  after(async () => {
    trace.disable();
    propagation.disable();
    await tracerProvider.shutdown();
    for (const s of schemas) await dropSchema(pool, s);
    await pool.end();
  });
  beforeEach(() => {
    exporter.reset();
    h = new Harness();
    input = { name: unique('store-otel-in'), type: 'direct', durable: false, autoDelete: true };
    output = { name: unique('store-otel-out'), type: 'direct', durable: false, autoDelete: true };
  });
  afterEach(async () => {
    await h.close();
    await deleteTopology([], [input.name, output.name]).catch(() => undefined);
  });

  async function storeOf(onRelay?: PostgresStore['onRelay']): Promise<{ store: PostgresStore; schema: string }> {
    const schema = uniqueSchema('postage_spec');
    schemas.push(schema);
    await pool.query(`CREATE SCHEMA "${schema}"`);
    await pool.query(`CREATE TABLE "${schema}".orders (id serial PRIMARY KEY, item text NOT NULL)`);
    return { store: new PostgresStore({ pool, schema, sweepAfterMs: 300, sweepEveryMs: 100, onRelay }), schema };
  }

  /**
   * Orders (with `store`) writes a row and sends `placed`; Sink, downstream, reports what it received. Resolves
   * with a producer of `order` and what Sink got.
   */
  async function wire(store: PostgresStore, schema: string) {
    const q = (n: string) => ({ name: unique(n), flags: { durable: false, autoDelete: true } });
    class Out extends GenericProducer {
      static override eks = [[output, 'placed'] as const];
      declare message_placed: MessageSender<{ item: string }>;
    }
    const out = await Out.create({ url, logger: quiet });
    h.onClose(() => out.close());
    class Orders extends MessageProcessor {
      @MessageHandler('command', 'order')
      async order(c: { parameters: { item: string } }) {
        await currentDelivery()!.db!.query(`INSERT INTO "${schema}".orders (item) VALUES ($1)`, [c.parameters.item]);
        await out.message_placed({ item: c.parameters.item });
      }
    }
    const got = deferred<Received>();
    class Sink extends MessageProcessor {
      @MessageHandler('command', 'placed')
      placed() {
        const d = currentDelivery()!;
        got.resolve({ messageId: String(d.messageId), traceparent: String(d.headers.traceparent) });
      }
    }
    const common = { url, logger: quiet, handleSignals: false } as const;
    await h.start(
      new Orders({ ...common, eqk: [[input, [[q('store-otel-orders'), 'k']]]], store }),
      new Sink({ ...common, eqk: [[output, [[q('store-otel-sink'), 'placed']]]] }),
    );
    class In extends GenericProducer {
      static override eks = [[input, 'k'] as const];
      declare message_order: MessageSender<{ item: string }>;
    }
    const p = await In.create({ url, logger: quiet });
    h.onClose(() => p.close());
    return { p, got: got.promise };
  }

  /** The run's span (Orders processing `order`), the publish of `placed`, and Sink's span, once all three ended. */
  async function spansOf(messageId: string) {
    return until(
      () => {
        const spans = exporter.getFinishedSpans();
        const run = spans.find((s) => s.kind === SpanKind.CONSUMER && s.attributes['postage.message.name'] === 'order');
        const publish = spans.filter(
          (s) => s.kind === SpanKind.PRODUCER && s.attributes['messaging.message.id'] === messageId,
        );
        const sink = spans.find(
          (s) => s.kind === SpanKind.CONSUMER && s.attributes['postage.message.name'] === 'placed',
        );
        return run && publish.length > 0 && sink && { run, publish, sink };
      },
      { message: () => `the three spans; ended: ${exporter.getFinishedSpans().map((s) => s.name)}` },
    );
  }

  it("publishes a run's outbox row after the commit in a span that is a child of the run's span", async () => {
    const { store, schema } = await storeOf();
    const { p, got } = await wire(store, schema);
    await p.message_order({ item: 'book' }, { _message_id: 'otel-order-1' });
    const received = await within(got, { message: 'Sink received placed' });
    const { run, publish, sink } = await spansOf(received.messageId);
    expect(publish).to.have.length(1);
    const traceId = run.spanContext().traceId;
    expect(publish[0].spanContext().traceId).to.equal(traceId);
    expect(parentOf(publish[0])).to.equal(run.spanContext().spanId);
    expect(publish[0].name).to.equal(`publish ${output.name}`);
    // The receiver got the publish span's context, and its own span is that span's child.
    expect(received.traceparent).to.equal(`00-${traceId}-${publish[0].spanContext().spanId}-01`);
    expect(sink.spanContext().traceId).to.equal(traceId);
    expect(parentOf(sink)).to.equal(publish[0].spanContext().spanId);
  });

  it("has the sweeper publish a row left behind in the trace the row stored: a child of the run's span", async () => {
    // The relay fails right after the commit, as a process that died there would leave the row: the sweeper's.
    let relays = 0;
    const { store, schema } = await storeOf((step) => {
      if (step === 'committed' && relays++ === 0) throw new Error('the process stops before its relay publishes');
    });
    const { p, got } = await wire(store, schema);
    await p.message_order({ item: 'book' }, { _message_id: 'otel-order-2' });
    const received = await within(got, { timeout: 10_000, message: 'Sink received placed from the sweeper' });
    const { run, publish, sink } = await spansOf(received.messageId);
    const runContext = run.spanContext();
    // The row kept the run's span as its trace context, fixed when the run wrote it.
    const { rows } = await pool.query(
      `SELECT properties->'headers'->>'traceparent' AS traceparent, sent_at FROM "${schema}".postage_outbox
       WHERE message_id = $1`,
      [received.messageId],
    );
    expect(rows).to.have.length(1);
    expect(rows[0].traceparent).to.equal(`00-${runContext.traceId}-${runContext.spanId}-01`);
    // One publish (the sweeper's; the relay never published), a child of the run's span, and the receiver its child.
    expect(publish).to.have.length(1);
    expect(publish[0].spanContext().traceId).to.equal(runContext.traceId);
    expect(parentOf(publish[0])).to.equal(runContext.spanId);
    expect(publish[0].attributes['postage.component']).to.equal('Orders');
    expect(received.traceparent).to.equal(`00-${runContext.traceId}-${publish[0].spanContext().spanId}-01`);
    expect(parentOf(sink)).to.equal(publish[0].spanContext().spanId);
  });

  it("publishes what store.transaction() sent in a child of the caller's active span", async () => {
    const manager = new AsyncLocalStorageContextManager().enable();
    context.setGlobalContextManager(manager);
    try {
      const { store, schema } = await storeOf();
      const { got } = await wire(store, schema);
      class Out extends GenericProducer {
        static override eks = [[output, 'placed'] as const];
        declare message_placed: MessageSender<{ item: string }>;
      }
      const out = await Out.create({ url, logger: quiet });
      h.onClose(() => out.close());
      // An HTTP route's span, say: the transaction runs inside it.
      const route = trace.getTracer('spec').startSpan('POST /orders');
      await context.with(trace.setSpan(context.active(), route), () =>
        store.transaction(async (db) => {
          await db.query(`INSERT INTO "${schema}".orders (item) VALUES ($1)`, ['pen']);
          await out.message_placed({ item: 'pen' });
        }),
      );
      route.end();
      const received = await within(got, { message: 'Sink received placed' });
      const publish = await until(
        () =>
          exporter
            .getFinishedSpans()
            .find((s) => s.kind === SpanKind.PRODUCER && s.attributes['messaging.message.id'] === received.messageId),
        { message: 'the publish span' },
      );
      expect(publish.spanContext().traceId).to.equal(route.spanContext().traceId);
      expect(parentOf(publish)).to.equal(route.spanContext().spanId);
      expect(received.traceparent).to.equal(`00-${route.spanContext().traceId}-${publish.spanContext().spanId}-01`);
    } finally {
      context.disable();
    }
  });
});

function parentOf(s: ReadableSpan): string | undefined {
  return (
    (s as unknown as { parentSpanContext?: { spanId: string } }).parentSpanContext?.spanId ??
    (s as unknown as { parentSpanId?: string }).parentSpanId
  );
}

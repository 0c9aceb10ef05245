import { expect } from 'chai';
import { metrics, propagation, SpanKind, trace } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { MeterProvider, MetricReader, type ResourceMetrics } from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  type ReadableSpan,
} from '@opentelemetry/sdk-trace-base';
import {
  configureTelemetry,
  CONVERSATION_HEADERS,
  currentDelivery,
  GenericProducer,
  MessageHandler,
  MessageProcessor,
  RpcHandler,
  type ExchangeObject,
  type MessageSender,
  type RpcSender,
} from '../../lib/index.js';
import { brokerUrl } from '../support/broker.js';
import { Harness, deferred } from '../support/components.js';
import { envelopeBytes } from '../support/envelopes.js';
import { publishRaw, unique } from '../support/topology.js';
import { until } from '../support/wait.js';

/** Collects on demand: the metrics as recorded so far. */
class SpecReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

function sums(rm: ResourceMetrics): Record<string, number> {
  const out: Record<string, number> = {};
  for (const sm of rm.scopeMetrics) {
    for (const m of sm.metrics) {
      for (const p of m.dataPoints) {
        const v = typeof p.value === 'number' ? p.value : (p.value as { count: number }).count;
        out[m.descriptor.name] = (out[m.descriptor.name] ?? 0) + v;
      }
    }
  }
  return out;
}

describe('OpenTelemetry', function () {
  this.timeout(30_000);
  let url: string;
  let h: Harness;
  const exporter = new InMemorySpanExporter();
  const reader = new SpecReader();
  let tracerProvider: BasicTracerProvider;
  let meterProvider: MeterProvider;

  before(async () => {
    url = await brokerUrl();
    tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    trace.setGlobalTracerProvider(tracerProvider);
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    meterProvider = new MeterProvider({ readers: [reader] });
    metrics.setGlobalMeterProvider(meterProvider);
  });
  after(async () => {
    trace.disable();
    propagation.disable();
    metrics.disable();
    await tracerProvider.shutdown();
    await meterProvider.shutdown();
  });
  beforeEach(() => {
    exporter.reset();
    h = new Harness();
  });
  afterEach(async () => h.close());

  it('makes one trace tree of a chain A → B (message) → C (RPC) → D (message), with one conversation id', async () => {
    const ex: ExchangeObject = { name: unique('otel-ex'), type: 'direct', durable: false, autoDelete: true };
    const conversations: Array<string | undefined> = [];
    const done = deferred();
    class Out extends GenericProducer {
      static override eks = [[ex, 'c'] as const];
      declare rpc_ask: RpcSender;
      declare message_tell: MessageSender;
    }
    const out = await Out.create({ url });
    h.onClose(() => out.close());
    class B extends MessageProcessor {
      @MessageHandler('command', 'start')
      async start() {
        conversations.push(currentDelivery()?.conversationId);
        await out.rpc_ask({}, { _timeout: 5 });
      }
    }
    class C extends MessageProcessor {
      @RpcHandler('command', 'ask')
      async ask() {
        conversations.push(currentDelivery()?.conversationId);
        await out.message_tell({}, { _key: 'd' });
        return 'told';
      }
    }
    class D extends MessageProcessor {
      @MessageHandler('command', 'tell')
      tell() {
        conversations.push(currentDelivery()?.conversationId);
        done.resolve();
      }
    }
    const q = (n: string) => ({ name: unique(n), flags: { durable: false, autoDelete: true } });
    await h.start(
      new B({ url, eqk: [[ex, [[q('otel-b'), 'b']]]] }),
      new C({ url, eqk: [[ex, [[q('otel-c'), 'c']]]] }),
      new D({ url, eqk: [[ex, [[q('otel-d'), 'd']]]] }),
    );
    class A extends GenericProducer {
      static override eks = [[ex, 'b'] as const];
      declare message_start: MessageSender;
    }
    const a = await A.create({ url });
    h.onClose(() => a.close());
    await a.message_start({}, { _message_id: 'conv-root' });
    await done.promise;
    // Spans end as their work settles: give the last ones (B's process span ends after its settle) a turn.
    const spans = await until(
      () => {
        const s = exporter.getFinishedSpans();
        return s.filter((x) => x.kind === SpanKind.CONSUMER).length >= 3 && s.length >= 6 && s;
      },
      { message: () => `3 consumer spans of 6 or more; ended: ${exporter.getFinishedSpans().map((x) => x.name)}` },
    );
    const byName = (kind: SpanKind, name: string) => spans.filter((s) => s.kind === kind && s.name === name);
    const publishB = one(
      byName(SpanKind.PRODUCER, `publish ${ex.name}`).filter(
        (s) => s.attributes['messaging.rabbitmq.destination.routing_key'] === 'b',
      ),
    );
    const processes = byName(SpanKind.CONSUMER, `process ${ex.name}`);
    const processB = one(processes.filter((s) => s.attributes['postage.message.name'] === 'start'));
    const call = one(byName(SpanKind.CLIENT, `call ${ex.name}`));
    const processC = one(processes.filter((s) => s.attributes['postage.message.name'] === 'ask'));
    const publishD = one(
      byName(SpanKind.PRODUCER, `publish ${ex.name}`).filter(
        (s) => s.attributes['messaging.rabbitmq.destination.routing_key'] === 'd',
      ),
    );
    const processD = one(processes.filter((s) => s.attributes['postage.message.name'] === 'tell'));
    const traceId = publishB.spanContext().traceId;
    for (const s of [processB, call, processC, publishD, processD])
      expect(s.spanContext().traceId, s.name).to.equal(traceId);
    expect(parentOf(processB)).to.equal(publishB.spanContext().spanId);
    expect(parentOf(call)).to.equal(processB.spanContext().spanId);
    expect(parentOf(processC)).to.equal(call.spanContext().spanId);
    expect(parentOf(publishD)).to.equal(processC.spanContext().spanId);
    expect(parentOf(processD)).to.equal(publishD.spanContext().spanId);
    // The call's span links the span that answered it.
    expect(call.links.map((l) => l.context.spanId)).to.include(processC.spanContext().spanId);
    expect(publishB.attributes).to.include({
      'messaging.system': 'rabbitmq',
      'messaging.destination.name': ex.name,
      'messaging.message.id': 'conv-root',
      'messaging.message.conversation_id': 'conv-root',
    });
    expect(publishB.attributes['messaging.message.body.size']).to.be.a('number').above(0);
    expect(conversations).to.deep.equal(['conv-root', 'conv-root', 'conv-root']);

    const { resourceMetrics } = await reader.collect();
    const counted = sums(resourceMetrics);
    expect(counted['postage.messages.sent']).to.be.at.least(2);
    expect(counted['postage.messages.handled']).to.be.at.least(3);
    expect(counted['postage.rpc.duration']).to.be.at.least(1);
    expect(counted['postage.handler.duration']).to.be.at.least(3);
    expect(counted['postage.deliveries.in_flight']).to.equal(0);
  });

  it('handles a message whose traceparent is malformed, in a trace of its own', async () => {
    const ex: ExchangeObject = { name: unique('otel-bad'), type: 'direct', durable: false, autoDelete: true };
    const got = deferred<string | undefined>();
    class Sink extends MessageProcessor {
      @MessageHandler('command', 'job')
      job() {
        got.resolve(currentDelivery()?.headers.traceparent as string | undefined);
      }
    }
    await h.start(
      new Sink({
        url,
        eqk: [[ex, [[{ name: unique('otel-bad-q'), flags: { durable: false, autoDelete: true } }, 'k']]]],
      }),
    );
    const body = envelopeBytes('job');
    await publishRaw(ex.name, 'k', body, {
      headers: { traceparent: 'not-a-traceparent', [CONVERSATION_HEADERS.conversationId]: 42 },
    });
    expect(await got.promise).to.equal('not-a-traceparent');
    // Spans are exported as they end, some a moment after the work a spec awaits.
    const spans = await until(
      () => {
        const s = exporter.getFinishedSpans();
        return s.some((x) => x.kind === SpanKind.CONSUMER) && s;
      },
      { message: 'a consumer span' },
    );
    const processed = one(spans.filter((s) => s.kind === SpanKind.CONSUMER));
    expect(parentOf(processed)).to.equal(undefined);
  });
});

describe('OpenTelemetry, turned off beside instrumentation-amqplib', function () {
  this.timeout(30_000);
  let h: Harness;
  const exporter = new InMemorySpanExporter();
  let tracerProvider: BasicTracerProvider;
  before(() => {
    tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    trace.setGlobalTracerProvider(tracerProvider);
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    configureTelemetry({ spans: false });
    h = new Harness();
  });
  after(async () => {
    configureTelemetry({ spans: true });
    await h.close();
    trace.disable();
    propagation.disable();
    await tracerProvider.shutdown();
  });

  it('makes no span of its own, and still carries the trace context a message came with on to what its handler sends', async () => {
    const url = await brokerUrl();
    const ex: ExchangeObject = { name: unique('otel-off'), type: 'direct', durable: false, autoDelete: true };
    const onward = deferred<string | undefined>();
    class Out extends GenericProducer {
      static override eks = [[ex, 'next'] as const];
      declare message_next: MessageSender;
    }
    const out = await Out.create({ url });
    h.onClose(() => out.close());
    class Relay extends MessageProcessor {
      @MessageHandler('command', 'job')
      async job() {
        await out.message_next({});
      }
      @MessageHandler('command', 'next')
      next() {
        onward.resolve(currentDelivery()?.headers.traceparent as string | undefined);
      }
    }
    const q = (n: string) => ({ name: unique(n), flags: { durable: false, autoDelete: true } });
    await h.start(
      new Relay({
        url,
        eqk: [
          [
            ex,
            [
              [q('otel-off-a'), 'k'],
              [q('otel-off-b'), 'next'],
            ],
          ],
        ],
      }),
    );
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const body = envelopeBytes('job');
    await publishRaw(ex.name, 'k', body, { headers: { traceparent } });
    expect(await onward.promise).to.match(/^00-4bf92f3577b34da6a3ce929d0e0e4736-/);
    expect(exporter.getFinishedSpans()).to.deep.equal([]);
  });
});

function one<T>(xs: T[]): T {
  expect(xs).to.have.length(1);
  return xs[0];
}

function parentOf(s: ReadableSpan): string | undefined {
  return (
    (s as unknown as { parentSpanContext?: { spanId: string } }).parentSpanContext?.spanId ??
    (s as unknown as { parentSpanId?: string }).parentSpanId
  );
}

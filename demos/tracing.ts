/**
 * Tracing: three components (gateway → orders → inventory) in one process,
 * with the OpenTelemetry SDK registered the way an application would, and an
 * exporter that prints each trace as a tree when the demo ends. Swap in
 * ConsoleSpanExporter or an OTLP exporter for real use (docs/telemetry.md).
 *   npm run demo:tracing
 */
import { trace, propagation } from '@opentelemetry/api';
import { ExportResultCode, W3CTraceContextPropagator, type ExportResult } from '@opentelemetry/core';
import {
  BasicTracerProvider,
  SimpleSpanProcessor,
  type ReadableSpan,
  type SpanExporter,
} from '@opentelemetry/sdk-trace-base';
import {
  currentDelivery,
  Exchange,
  GenericProducer,
  MessageHandler,
  MessageProcessor,
  MicroScheduler,
  RpcHandler,
  type MessageSender,
  type RpcSender,
} from '../lib/index.js';

/** Keeps the spans, and prints them as one tree per trace on shutdown. */
class TreeConsoleExporter implements SpanExporter {
  readonly spans: ReadableSpan[] = [];
  export(spans: ReadableSpan[], done: (r: ExportResult) => void): void {
    this.spans.push(...spans);
    done({ code: ExportResultCode.SUCCESS });
  }
  async shutdown(): Promise<void> {
    const parent = (s: ReadableSpan) => s.parentSpanContext?.spanId;
    const ids = new Set(this.spans.map((s) => s.spanContext().spanId));
    const print = (s: ReadableSpan, depth: number) => {
      const name = s.attributes['postage.message.name'];
      console.log(
        `${'   '.repeat(depth)}└─ ${s.name}${name ? ` [${name}]` : ''} (${s.attributes['postage.component']})`,
      );
      for (const child of this.spans.filter((c) => parent(c) === s.spanContext().spanId)) print(child, depth + 1);
    };
    for (const root of this.spans.filter((s) => !parent(s) || !ids.has(parent(s)!))) {
      console.log(`trace ${root.spanContext().traceId}`);
      print(root, 0);
    }
  }
}

const exporter = new TreeConsoleExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
trace.setGlobalTracerProvider(provider);
propagation.setGlobalPropagator(new W3CTraceContextPropagator());

class ShopExchange extends Exchange {
  static override name = 'tracing-demo-exchange';
  static override type = 'direct';
  static override autoDelete = true;
  static override durable = false;
}

class Gateway extends GenericProducer {
  static override eks = [[ShopExchange, 'orders']] as const;
  declare message_place: MessageSender;
}
class Calls extends GenericProducer {
  static override eks = [[ShopExchange, 'inventory']] as const;
  declare rpc_reserve: RpcSender;
}

const conversations = new Set<string | undefined>();
let finish!: () => void;
const finished = new Promise<void>((r) => (finish = r));

const inventoryCalls = await Calls.create({ fingerprint: { name: 'orders' } });
class Orders extends MessageProcessor {
  @MessageHandler('command', 'place')
  async place() {
    conversations.add(currentDelivery()?.conversationId);
    await inventoryCalls.rpc_reserve({ sku: 'tea', n: 2 }, { _timeout: 5 });
    finish();
  }
}
class Inventory extends MessageProcessor {
  @RpcHandler('command', 'reserve')
  reserve() {
    conversations.add(currentDelivery()?.conversationId);
    return { reserved: true };
  }
}
const queue = (name: string) => ({ name, flags: { durable: false, autoDelete: true } });
const orders = new Orders({
  fingerprint: { name: 'orders' },
  handleSignals: false,
  eqk: [[ShopExchange, [[queue('tracing-demo-orders'), 'orders']]]],
});
const inventory = new Inventory({
  fingerprint: { name: 'inventory' },
  handleSignals: false,
  eqk: [[ShopExchange, [[queue('tracing-demo-inventory'), 'inventory']]]],
});
await orders.ready();
await inventory.ready();
const scheduler = new MicroScheduler();
scheduler.addMicrothread(orders);
scheduler.addMicrothread(inventory);
const running = scheduler.run();

const gateway = await Gateway.create({ fingerprint: { name: 'gateway' } });
await gateway.message_place({ sku: 'tea', n: 2 }, { _message_id: 'order-1' });
await finished;
await scheduler.stop();
await running;
await gateway.close();
await inventoryCalls.close();
await provider.shutdown();
console.log(`conversation: ${[...conversations].join(', ')}`);

/**
 * The fault specs' stream: a producer sends `n` numbered messages to a
 * processor, a fault lands a third of the way in, and every failed send is
 * sent again (at-least-once), as a careful user would.
 */
import {
  GenericProducer,
  MessageHandler,
  MessageProcessor,
  MicroScheduler,
  type ExchangeObject,
  type QueueSpec,
} from '../../lib/index.js';

export interface StreamOptions {
  url: string;
  exchange: ExchangeObject;
  queue: QueueSpec;
  n: number;
  prefetch: number;
  fault: () => Promise<void>;
  /** Wait for the fault before sending on (a restart), or let sends race it (a crash). @default true */
  awaitFault?: boolean;
  /** How long one message may keep failing before the stream gives up. @default 60 s */
  giveUpMs?: number;
}

export interface StreamResult {
  confirmed: Set<number>;
  received: Set<number>;
  /** 'producer disconnected', 'sink connected'… in the order they happened. */
  events: string[];
  /** Sends that failed and were sent again. */
  resent: number;
}

export async function streamThroughFault(o: StreamOptions): Promise<StreamResult> {
  const received = new Set<number>();
  const events: string[] = [];
  let wake: (() => void) | undefined;
  class Sink extends MessageProcessor {
    @MessageHandler('command', 'item')
    item(content: { parameters: { id: number } }) {
      received.add(content.parameters.id);
      wake?.();
    }
  }
  class Source extends GenericProducer {
    static override eks = [[o.exchange, 'item'] as const];
  }
  const reconnect = { initialMs: 50, maxMs: 500 };
  const sink = new Sink({ url: o.url, reconnect, prefetch: o.prefetch, eqk: [[o.exchange, [[o.queue, 'item']]]] });
  sink.on('disconnected', () => events.push('sink disconnected')).on('connected', () => events.push('sink connected'));
  await sink.ready();
  const s = new MicroScheduler();
  s.addMicrothread(sink);
  const running = s.run();
  const p = await Source.create({ url: o.url, reconnect });
  p.on('disconnected', () => events.push('producer disconnected')).on('connected', () =>
    events.push('producer connected'),
  );

  const confirmed = new Set<number>();
  let resent = 0;
  let fault: Promise<void> | undefined;
  const giveUpMs = o.giveUpMs ?? 60_000;
  try {
    for (let id = 0; id < o.n; id++) {
      if (id === Math.floor(o.n / 3)) {
        fault = o.fault();
        if (o.awaitFault ?? true) await fault;
      }
      const giveUp = Date.now() + giveUpMs;
      for (;;) {
        try {
          await p.message_item({ id });
          confirmed.add(id);
          break;
        } catch (err) {
          resent++;
          if (Date.now() > giveUp)
            throw new Error(`message ${id} still fails after ${giveUpMs / 1000} s: ${(err as Error).message}`);
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    }
    await fault;
    // The broker has no "all consumed" event: wait on each delivery, with a poll as a floor.
    const deadline = Date.now() + 90_000;
    while ([...confirmed].some((id) => !received.has(id)) && Date.now() < deadline) {
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 200);
      });
    }
  } finally {
    s.stop();
    await running;
    await sink.close();
    await p.close();
  }
  return { confirmed, received, events, resent };
}

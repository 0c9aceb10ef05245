/**
 * Client CPU per message: `process.cpuUsage()` (user + system) over a
 * steady-state run in this process, divided by the messages. Both halves of
 * publish -> consume run here, so the figure is everything the client does
 * for a message: encode, publish, confirm, receive, decode, dispatch, ack,
 * amqplib's framing included. It moves far less with a noisy machine than a
 * rate does (a stall costs wall time, not CPU).
 *
 * The raw side is a raw user's best: a confirm channel with
 * `waitForConfirms()` every 500 sends, a consumer at the same prefetch that
 * parses each body and acks it. A connection per component on both sides.
 */
import {
  GenericProducer,
  MessageHandler,
  MessageProcessor,
  MicroScheduler,
  type ExchangeObject,
} from '../dist/index.js';
import { dropQueue, envelope, filledQueue, PREFETCH, rawConnect, sendAll, uid, WINDOW } from './cases.js';

/** Messages sent (or taken) before the CPU clock starts: JIT, fresh channels. */
const WARM = 2_000;

/** The last run's split, user and system µs per message (bench/profile.ts prints it). */
export const lastSplit = { user: 0, system: 0 };

const perMessage = (start: NodeJS.CpuUsage, n: number) => {
  const d = process.cpuUsage(start);
  lastSplit.user = d.user / n;
  lastSplit.system = d.system / n;
  return (d.user + d.system) / n;
};

export type Half = 'both' | 'send' | 'consume';

/** µs of CPU per message, raw amqplib. */
export async function rawCpu(url: string, n: number, half: Half): Promise<number> {
  const conn = await rawConnect(url);
  const q = half === 'consume' ? await filledQueue(url, WARM + n) : uid();
  const pub = await conn.createConfirmChannel();
  await pub.assertQueue(q, { durable: true });
  const subConn = half === 'send' ? undefined : await rawConnect(url);
  let start: NodeJS.CpuUsage | undefined;
  let got = 0;
  let finish!: () => void;
  const done = new Promise<void>((r) => (finish = r));
  const total = half === 'consume' ? WARM + n : WARM + n;
  if (subConn) {
    const sub = await subConn.createChannel();
    await sub.prefetch(PREFETCH);
    await sub.consume(q, (m) => {
      if (!m) return;
      JSON.parse(m.content.toString());
      sub.ack(m);
      got++;
      if (half === 'consume' && got === WARM) start = process.cpuUsage();
      if (got === total) finish();
    });
  }
  if (half !== 'consume') {
    const body = envelope(100);
    for (let sent = 0; sent < total; ) {
      if (sent === WARM) start = process.cpuUsage();
      const k = Math.min(WINDOW, total - sent);
      for (let i = 0; i < k; i++)
        pub.publish('', q, Buffer.from(JSON.stringify(body)), { persistent: true, contentType: 'application/json' });
      await pub.waitForConfirms();
      sent += k;
    }
  }
  if (subConn) await done;
  const us = perMessage(start!, n);
  await pub.deleteQueue(q);
  await conn.close();
  await subConn?.close();
  return us;
}

/** µs of CPU per message, postage-ts (a GenericProducer and a MessageProcessor, each on its own connection). */
export async function postageCpu(url: string, n: number, half: Half): Promise<number> {
  const ex: ExchangeObject = { name: '', type: 'direct' };
  const q = half === 'consume' ? await filledQueue(url, WARM + n) : uid();
  const total = WARM + n;
  let start: NodeJS.CpuUsage | undefined;
  let got = 0;
  let finish!: () => void;
  const done = new Promise<void>((r) => (finish = r));
  class Sink extends MessageProcessor {
    @MessageHandler('command', 'payload')
    payload() {
      got++;
      if (half === 'consume' && got === WARM) start = process.cpuUsage();
      if (got === total) finish();
    }
  }
  class Source extends GenericProducer {
    static override eks = [[ex, q] as const];
  }
  const sink =
    half === 'send'
      ? undefined
      : new Sink({
          url,
          prefetch: PREFETCH,
          handleSignals: false,
          eqk: [[ex, [[{ name: q, flags: { durable: true } }, q]]]],
        });
  const s = new MicroScheduler();
  let running: Promise<void> | undefined;
  if (sink) {
    await sink.ready();
    s.addMicrothread(sink);
    running = s.run();
  }
  const p = half === 'consume' ? undefined : await Source.create({ url });
  if (p) {
    if (!sink) {
      // Nothing consumes: the queue is declared as the processor would, so sends have somewhere to go.
      const c = await rawConnect(url);
      await (await c.createChannel()).assertQueue(q, { durable: true });
      await c.close();
    }
    const body = envelope(100);
    await sendAll(p, body, WARM, WINDOW);
    start = process.cpuUsage();
    await sendAll(p, body, n, WINDOW);
  }
  if (sink) await done;
  const us = perMessage(start!, n);
  s.stop();
  await running;
  await sink?.close();
  await p?.close();
  await dropQueue(url, q);
  return us;
}

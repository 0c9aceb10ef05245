/**
 * Partitions spread over replicas (BENCH_ONLY=partitions): an I/O-bound handler (it waits 5 ms), `concurrency: 1`
 * per replica, 12 partitions, keyed messages over 1,200 keys; messages per second with 1, 2 and 3 replicas. The
 * replicas share one process (each on its own connection): a handler that waits costs the process almost nothing,
 * so the rate measures how the partitions spread, not the CPU.
 */
import amqp from 'amqplib';
import {
  GenericProducer,
  MessageHandler,
  MessageProcessor,
  MicroScheduler,
  type ExchangeObject,
  type MessageSender,
} from '../dist/index.js';
import { uid } from './cases.js';

export const PARTITIONS = 12;
export const KEYS = 1200;

/** Messages per second `replicas` replicas handle, from the first send to the last handling, once spread. */
export async function partitionedRate(url: string, replicas: number, n: number): Promise<number> {
  const exchange: ExchangeObject = { name: uid(), type: 'direct' };
  const queue = uid();
  let got = 0;
  let finish!: () => void;
  const done = new Promise<void>((r) => (finish = r));
  class Worker extends MessageProcessor {
    @MessageHandler('command', 'work')
    async work(): Promise<void> {
      await new Promise((r) => setTimeout(r, 5));
      if (++got === n) finish();
    }
  }
  const s = new MicroScheduler();
  const workers = Array.from(
    { length: replicas },
    (_, i) =>
      new Worker({
        url,
        fingerprint: { name: 'bench-partitions', pid: `${process.pid}.${i}` },
        partitions: PARTITIONS,
        concurrency: 1,
        handleSignals: false,
        eqk: [[exchange, [[queue, 'work']]]],
      }),
  );
  for (const w of workers) {
    await w.ready();
    s.addMicrothread(w);
  }
  const running = s.run();
  await spread(workers);
  class Sender extends GenericProducer {
    static override eks = [[exchange, 'work'] as const];
    declare message_work: MessageSender;
  }
  const sender = await Sender.create({ url });
  const t0 = performance.now();
  for (let i = 0; i < n; i += 500) {
    const sends = [];
    for (let j = i; j < Math.min(n, i + 500); j++)
      sends.push(sender.message_work({ seq: j }, { _partition_key: `k${j % KEYS}` }));
    await Promise.all(sends);
  }
  await done;
  const rate = n / ((performance.now() - t0) / 1000);
  await sender.close();
  s.stop();
  await running;
  for (const w of workers) await w.close();
  const conn = await amqp.connect(url);
  const ch = await conn.createChannel();
  for (let i = 0; i < PARTITIONS; i++) await ch.deleteQueue(`${queue}.p${i}`);
  for (const e of [`${queue}.partitions`, `${queue}.replicas`, exchange.name]) await ch.deleteExchange(e);
  await conn.close();
  return rate;
}

/** Waits (up to 20 s) until every replica is active on its share of the partitions. */
async function spread(workers: MessageProcessor[]): Promise<void> {
  const deadline = Date.now() + 20_000;
  const [lo, hi] = [Math.floor(PARTITIONS / workers.length), Math.ceil(PARTITIONS / workers.length)];
  for (;;) {
    const counts = (await Promise.all(workers.map((w) => w.rpcDescribe()))).map(
      (d) => d.partitions?.[0].activeHere.length ?? 0,
    );
    if (counts.reduce((a, b) => a + b, 0) === PARTITIONS && counts.every((c) => c >= lo && c <= hi)) return;
    if (Date.now() > deadline) throw new Error(`partitions did not spread over ${workers.length}: ${counts.join()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

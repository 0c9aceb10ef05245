/**
 * A partitioned replica in a process of its own for the hostile kill loop: prints "ready", then "h KEY SEQ TIME" for
 * each message as it handles it (before the ack, so a kill after the line is a redelivery, not a loss).
 */
import { writeSync } from 'node:fs';
import { MessageHandler, MessageProcessor, MicroScheduler } from '../../lib/index.js';

class Worker extends MessageProcessor {
  @MessageHandler('command', 'work')
  work(content: { parameters: { key: string; seq: number } }) {
    writeSync(1, `h ${content.parameters.key} ${content.parameters.seq} ${Date.now()}\n`);
  }
}
const p = new Worker({
  fingerprint: { name: 'worker', pid: `${process.pid}-child` },
  partitions: Number(process.env.PARTITIONS),
  rebalance: { heartbeatMs: 1000 },
  handleSignals: process.env.SIGNALS === '1',
  eqk: [[{ name: process.env.EXCHANGE!, type: 'direct' }, [[process.env.QUEUE!, 'work']]]],
});
await p.ready();
const s = new MicroScheduler();
s.addMicrothread(p);
writeSync(1, 'ready\n');
await s.run();

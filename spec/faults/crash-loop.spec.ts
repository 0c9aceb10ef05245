/**
 * Fault: one message makes its component crash (process.exit(1) before it is
 * settled) every time it is handled. The spec restarts the component as a
 * process manager would. Must hold: on a quorum queue, which counts
 * deliveries across consumers, and on a classic queue with
 * `redeliveryCount: 'header'`, the poison message goes to the error exchange
 * after maxDeliveries crashes, every good message is handled, and the
 * component then stays up.
 */
import { expect } from 'chai';
import amqp from 'amqplib';
import { spawn, type ChildProcess } from 'node:child_process';
import { envelopeBytes } from '../support/envelopes.js';
import { brokerUrl } from '../support/broker.js';
import { deleteTopology, getOne, unique } from '../support/topology.js';

describe('fault: a message that crashes its component every time', function () {
  this.timeout(120_000);

  for (const [queueType, how] of [
    ['quorum', 'quorum delivery count'],
    ['classic', "redeliveryCount: 'header'"],
  ] as const) {
    it(`goes to the error exchange after maxDeliveries crashes on a ${queueType} queue (${how}), and every good message is handled`, async () => {
      const url = await brokerUrl();
      const queue = unique('crash-q');
      const errors = unique('crash-errors');
      const MAX = 3;
      const handled = new Set<number>();
      let crashes = 0;
      let child: ChildProcess | undefined;
      const start = () =>
        new Promise<ChildProcess>((resolve, reject) => {
          const c = spawn(process.execPath, ['--import', 'tsx', 'spec/fixtures/crash-on-poison.ts', queue], {
            env: {
              ...process.env,
              POSTAGE_URL: url,
              ERRORS: errors,
              MAX: String(MAX),
              QUEUE_TYPE: queueType,
              POSTAGE_LOG_LEVEL: 'silent',
            },
          });
          let out = '';
          c.stdout!.on('data', (b: Buffer) => {
            out += String(b);
            for (const line of out.split('\n').slice(0, -1)) {
              const m = /^handled (\d+)$/.exec(line);
              if (m) handled.add(Number(m[1]));
              if (line === 'ready') resolve(c);
            }
            out = out.slice(out.lastIndexOf('\n') + 1);
          });
          c.on('error', reject);
        });
      // The component declares its queue: start it once before publishing.
      child = await start();
      const conn = await amqp.connect(url);
      const ch = await conn.createConfirmChannel();
      const body = (n: number, poison = false) => envelopeBytes('item', { n, poison });
      for (let n = 0; n < 20; n++) ch.sendToQueue(queue, body(n, n === 7), { persistent: true, messageId: `m${n}` });
      await ch.waitForConfirms();
      // A process manager: restart it each time it dies, until the good ones are all handled.
      const deadline = Date.now() + 90_000;
      // On a classic queue the counted copy goes to the back: the good ones may all be handled before the last crash.
      while ((handled.size < 19 || crashes < MAX) && Date.now() < deadline) {
        const exited = await Promise.race([
          new Promise<number | null>((r) => child!.once('exit', r)),
          new Promise<'running'>((r) => setTimeout(() => r('running'), 200)),
        ]);
        if (exited !== 'running') {
          crashes++;
          child = await start();
        }
      }
      // The poison one reaches the error exchange, and the component that sent it there is still up.
      const dead = await getOne(errors, 20_000);
      const stillUp = child.exitCode === null;
      child.kill('SIGTERM');
      await new Promise((r) => child!.once('exit', r));
      await conn.close();
      await deleteTopology([queue, errors], [errors]);
      expect([...handled].sort((a, b) => a - b)).to.deep.equal(
        Array.from({ length: 20 }, (_, n) => n).filter((n) => n !== 7),
      );
      expect(crashes).to.equal(MAX);
      expect(stillUp).to.equal(true);
      if (dead === false) throw new Error('expected a message in the queue, found none');
      expect(dead.properties.headers?.['x-error-name']).to.equal('DeliveryLimitExceeded');
      expect(dead.properties.messageId).to.equal('m7');
    });
  }
});

/**
 * Hostile: `postage errors replay QUEUE --all` killed with SIGKILL halfway through a few thousand messages. Every
 * message must still be somewhere: replayed to its origin, or back in the error queue (the unacked ones return when
 * the tool's connection dies); the lock must go with it, so a second replay finishes the job.
 */
import { expect } from 'chai';
import amqp from 'amqplib';
import { brokerUrl, queueCounts } from '../support/broker.js';
import { launch, postage } from '../support/cli.js';
import { deleteTopology, unique } from '../support/topology.js';
import { until } from '../support/wait.js';

const N = 10_000;

describe('Hostile: a replay killed halfway', function () {
  this.timeout(120_000);
  const ex = unique('hr-ex');
  const target = unique('hr-target');
  const errors = unique('hr-errors');

  after(() => deleteTopology([target, errors, `${errors}.lock`], [ex]).catch(() => undefined));

  it('leaves every message replayed or in the error queue, and a second replay takes the rest', async () => {
    const url = await brokerUrl();
    const conn = await amqp.connect(url);
    const ch = await conn.createConfirmChannel();
    await ch.assertExchange(ex, 'direct', { durable: false });
    await ch.assertQueue(target, { durable: false });
    await ch.bindQueue(target, ex, 'k');
    await ch.assertQueue(errors, { durable: false });
    for (let i = 0; i < N; i++)
      ch.sendToQueue(errors, Buffer.from(JSON.stringify({ i })), {
        messageId: `m-${i}`,
        headers: { 'x-error-name': 'Error', 'x-original-exchange': ex, 'x-original-routing-key': 'k' },
      });
    await ch.waitForConfirms();
    const replay = await launch(['errors', 'replay', errors, '--all']);
    try {
      await until(async () => ((await queueCounts(target))?.ready ?? 0) >= N / 10, {
        timeout: 60_000,
        message: 'a tenth replayed',
        every: 5,
      });
    } finally {
      replay.kill();
    }
    await replay.exited;
    await until(async () => (await queueCounts(errors))?.unacked === 0, { message: 'the killed tool’s holds back' });
    const mid = { target: (await queueCounts(target))!.ready, errors: (await queueCounts(errors))!.ready };
    expect(mid.target + mid.errors, `after the kill: ${JSON.stringify(mid)}`).to.be.at.least(N);
    console.log(`      after the kill: ${JSON.stringify(mid)}`);
    if (mid.errors > 0) {
      const again = await postage(['errors', 'replay', errors, '--all'], { timeout: 60_000 });
      expect(again.code, again.stderr).to.equal(0);
    }
    // Every id at least once in the target.
    const ids = new Set<string>();
    let total = 0;
    for (;;) {
      const m = await ch.get(target, { noAck: true });
      if (!m) break;
      total++;
      ids.add(String(m.properties.messageId));
    }
    await conn.close();
    console.log(`      killed at ${mid.target} replayed; in the end ${ids.size} ids, ${total - ids.size} duplicates`);
    expect(ids.size).to.equal(N);
  });
});

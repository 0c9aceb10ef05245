/**
 * Fault: a consumer process crashes (SIGKILL) holding unacked messages.
 * Injected by killing a component process while it works through 200
 * messages with a slow handler and a prefetch of 10 (shared broker: nothing
 * stops it). Must hold: every message was either handled or is back in the
 * queue for the next consumer, including the ones the dead process had
 * prefetched or was handling.
 */
import { expect } from 'chai';
import amqp from 'amqplib';
import { spawn } from 'node:child_process';
import { brokerUrl } from '../support/broker.js';
import { deleteTopology, unique } from '../support/topology.js';

describe('fault: a consumer crashes with unacked messages', function () {
  this.timeout(60_000);
  const N = 200;

  it('loses none: what it had not acked goes back to the queue', async () => {
    const url = await brokerUrl();
    const queue = unique('crash');
    const child = spawn(process.execPath, ['--import', 'tsx', 'spec/fixtures/slow-receiver.ts', queue], { env: { ...process.env, POSTAGE_URL: url } });
    const handled = new Set<number>();
    const started = new Set<number>();
    let out = '';
    let onHandled: (() => void) | undefined;
    const ready = new Promise<void>((resolve) =>
      child.stdout.on('data', (c: Buffer) => {
        out += c;
        for (const m of String(c).matchAll(/(started|handled) (\d+)/g)) (m[1] === 'started' ? started : handled).add(Number(m[2]));
        if (out.includes('ready')) resolve();
        onHandled?.();
      }),
    );
    const exited = new Promise<string | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    await ready;

    const conn = await amqp.connect(url);
    const ch = await conn.createConfirmChannel();
    for (let id = 0; id < N; id++) {
      ch.publish('', queue, Buffer.from(JSON.stringify({ type: 'command', name: 'item', category: 'message', version: '2', fingerprint: {}, content: { parameters: { id } }, _reserved: {} })), { persistent: true });
    }
    await ch.waitForConfirms();
    // Kill once the burst is well under way, with a handler running and more prefetched.
    await new Promise<void>((resolve) => {
      onHandled = () => handled.size >= 20 && resolve();
      onHandled();
    });
    child.kill('SIGKILL');
    expect(await exited).to.equal('SIGKILL');

    const left = new Set<number>();
    for (;;) {
      const m = await ch.get(queue, { noAck: true });
      if (!m) break;
      left.add(JSON.parse(m.content.toString()).content.parameters.id);
    }
    await conn.close();
    await deleteTopology([queue]);
    const lost = Array.from({ length: N }, (_, i) => i).filter((id) => !handled.has(id) && !left.has(id));
    expect(lost).to.deep.equal([]);
    // The handler that was running when the process died never finished: its message is back.
    expect([...started].filter((id) => !handled.has(id)).every((id) => left.has(id))).to.equal(true);
    expect(handled.size).to.be.lessThan(N);
  });
});

/**
 * Fault: SIGTERM during a burst. Injected by signalling a component process
 * while it works through 200 messages with a slow handler (shared broker:
 * nothing stops it). Must hold: the process ends; every message was either
 * handled (and acked) or is back in the queue — none is lost.
 */
import { expect } from 'chai';
import amqp from 'amqplib';
import { spawn } from 'node:child_process';
import { brokerUrl } from '../support/broker.js';
import { deleteTopology, unique } from '../support/topology.js';

describe('fault: SIGTERM during a burst', function () {
  this.timeout(60_000);
  const N = 200;

  it('finishes the handler in flight, acks it, and leaves every other message in the queue', async () => {
    const url = await brokerUrl();
    const queue = unique('sigterm');
    const child = spawn(process.execPath, ['--import', 'tsx', 'spec/fixtures/slow-receiver.ts', queue], { env: { ...process.env, POSTAGE_URL: url } });
    const handled = new Set<number>();
    const started = new Set<number>();
    let out = '';
    const ready = new Promise<void>((resolve) =>
      child.stdout.on('data', (c: Buffer) => {
        out += c;
        for (const m of String(c).matchAll(/(started|handled) (\d+)/g)) (m[1] === 'started' ? started : handled).add(Number(m[2]));
        if (out.includes('ready')) resolve();
      }),
    );
    const exited = new Promise<[number | null, string | null]>((resolve) => child.on('exit', (code, signal) => resolve([code, signal])));
    await ready;

    const conn = await amqp.connect(url);
    const ch = await conn.createConfirmChannel();
    for (let id = 0; id < N; id++) {
      ch.publish('', queue, Buffer.from(JSON.stringify({ type: 'command', name: 'item', category: 'message', version: '2', fingerprint: {}, content: { parameters: { id } }, _reserved: {} })), { persistent: true });
    }
    await ch.waitForConfirms();
    // Signal once the burst is well under way.
    while (handled.size < 20) await new Promise((r) => setTimeout(r, 10));
    child.kill('SIGTERM');
    const [, signal] = await exited;
    expect(signal).to.equal('SIGTERM');

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
    expect(handled.size).to.be.lessThan(N);
    // Graceful: the handler in flight when the signal came ran to the end...
    expect([...started].filter((id) => !handled.has(id))).to.deep.equal([]);
    // ...and everything handled was acked, so it is not waiting to be handled again.
    expect([...handled].filter((id) => left.has(id))).to.deep.equal([]);
  });
});

/**
 * Fault: the connection resets again and again while a producer sends.
 * Injected with a relay in front of the broker that resets every connection
 * through it every 300 ms, during 3,000 sends with whileDisconnected: 'buffer'.
 * Must hold: no send rejects (one whose confirm was lost with its connection
 * is published again on the next), every message is consumed at least once,
 * and duplicates are counted (they carry the same message id). A send whose
 * confirm was lost is never reported as a broker nack.
 */
import { expect } from 'chai';
import amqp from 'amqplib';
import { BrokerError, GenericProducer, type ExchangeObject, type MessageSender } from '../../lib/index.js';
import { brokerUrl } from '../support/broker.js';
import { silentNetwork } from '../support/proxy.js';
import { deleteTopology, unique } from '../support/topology.js';

describe('fault: the connection resets again and again during sends', function () {
  this.timeout(120_000);

  async function run(mode: 'buffer' | 'fail') {
    const url = await brokerUrl();
    const relay = await silentNetwork(url);
    const ex: ExchangeObject = { name: unique('us-ex'), type: 'direct', durable: false };
    const queue = unique('us-q');
    const conn = await amqp.connect(url);
    const ch = await conn.createChannel();
    await ch.assertExchange(ex.name, 'direct', { durable: false });
    await ch.assertQueue(queue);
    await ch.bindQueue(queue, ex.name, 'k');
    const seen = new Map<number, Set<string>>();
    let deliveries = 0;
    await ch.consume(
      queue,
      (m) => {
        if (!m) return;
        deliveries++;
        const n = JSON.parse(m.content.toString()).content.parameters.n as number;
        const ids = seen.get(n) ?? new Set<string>();
        ids.add(String(m.properties.messageId));
        seen.set(n, ids);
      },
      { noAck: true },
    );
    class Sender extends GenericProducer {
      static override eks = [[ex, 'k'] as const];
      declare message_item: MessageSender;
    }
    const p = await Sender.create({
      url: relay.url,
      whileDisconnected: mode,
      connectTimeoutMs: 2000,
      reconnect: { initialMs: 20, maxMs: 100 },
    });
    const resets = setInterval(() => relay.reset(), 300);
    const N = 3000;
    const outcomes = await Promise.all(
      Array.from({ length: N }, async (_, n) => {
        // Spread over time, so that resets fall among sends in flight.
        await new Promise((r) => setTimeout(r, Math.floor(n / 3)));
        return p.message_item({ n }).then(
          () => 'confirmed',
          (e: unknown) => (e instanceof BrokerError ? e.code : String(e)),
        );
      }),
    );
    clearInterval(resets);
    const confirmed = outcomes.map((o, n) => (o === 'confirmed' ? n : -1)).filter((n) => n >= 0);
    // Everything confirmed must arrive: wait for it (bounded).
    const end = Date.now() + 20_000;
    while (confirmed.some((n) => !seen.has(n)) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    await p.close();
    await relay.close();
    await conn.close();
    await deleteTopology([queue], [ex.name]);
    const codes = outcomes.filter((o) => o !== 'confirmed');
    return {
      confirmed,
      codes,
      lost: confirmed.filter((n) => !seen.has(n)),
      duplicates: deliveries - seen.size,
      sameId: [...seen.values()].every((ids) => ids.size === 1),
    };
  }

  it("in 'buffer' mode sends every message at least once and rejects none: a lost confirm means sending again, same message id", async () => {
    const r = await run('buffer');
    expect(r.codes).to.deep.equal([]);
    expect(r.lost).to.deep.equal([]);
    expect(r.sameId).to.equal(true);
    console.log(`      (${r.confirmed.length} confirmed, ${r.duplicates} duplicates delivered)`);
  });

  it('by default rejects a send whose confirm was lost with UNCONFIRMED, never as a broker NACK, and loses no confirmed message', async () => {
    const r = await run('fail');
    const counts = r.codes.reduce<Record<string, number>>((c, code) => {
      c[code] = (c[code] ?? 0) + 1;
      return c;
    }, {});
    console.log(`      (${r.confirmed.length} confirmed, rejected: ${JSON.stringify(counts)})`);
    expect(counts.UNCONFIRMED, 'a confirm lost with its connection (else this spec proves nothing)').to.be.above(0);
    expect(r.lost).to.deep.equal([]);
    expect(r.codes.filter((c) => c === 'NACK')).to.deep.equal([]);
    expect(new Set(r.codes)).to.satisfy((codes: Set<string>) =>
      [...codes].every((c) => c === 'UNCONFIRMED' || c === 'NOT_CONNECTED'),
    );
  });
});

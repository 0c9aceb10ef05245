/**
 * Hostile: `_cloudevent` on a producer whose encoder seals every envelope (`EncryptedJsonEncoder`). A user who
 * configured encryption must not find plaintext on the wire because one send asked for a CloudEvent: the send is
 * refused (or sealed), never sent in clear.
 */
import { expect } from 'chai';
import amqp from 'amqplib';
import { randomBytes } from 'node:crypto';
import { EncryptedJsonEncoder, GenericProducer, MessageCommand } from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { brokerUrl } from '../support/broker.js';
import { Harness } from '../support/components.js';
import { aheadOfFence, deleteTopology, unique } from '../support/topology.js';

describe('Hostile: _cloudevent beside an encoder that seals', function () {
  this.timeout(30_000);
  let url: string;
  let h: Harness;
  const ex = { name: unique('hc-ex'), type: 'direct' as const, durable: false };
  const sink = unique('hc-sink');

  before(async () => {
    url = await brokerUrl();
    const conn = await amqp.connect(url);
    const ch = await conn.createChannel();
    await ch.assertExchange(ex.name, 'direct', { durable: false });
    await ch.assertQueue(sink, { durable: false });
    await ch.bindQueue(sink, ex.name, 'placed');
    await conn.close();
  });
  after(() => deleteTopology([sink], [ex.name]));
  beforeEach(() => {
    h = new Harness();
  });
  afterEach(() => h.close());

  function shop() {
    const exchange = ex;
    return class Shop extends GenericProducer {
      static override eks = [[exchange, 'placed'] as const];
      build_message_placed(secret: string) {
        return new MessageCommand('placed', { secret });
      }
    };
  }

  it('never puts an encrypting producer’s content on the wire in clear', async () => {
    const Shop = shop();
    const p = await Shop.create({
      url,
      logger: makeLogger('silent'),
      encoder: new EncryptedJsonEncoder({ keys: { k1: randomBytes(32) } }),
    });
    h.onClose(() => p.close());
    const sent = await (p as unknown as { message_placed: (s: string, o: object) => Promise<void> })
      .message_placed('card-4111-1111', { _cloudevent: true })
      .then(
        () => 'sent',
        (err: Error) => `refused: ${err.message}`,
      );
    // Whatever the send put on the wire (a confirmed publish) is in the sink ahead of a fence sent now.
    const wire = (await aheadOfFence(sink)).map((m) => m.content.toString()).join('\n');
    expect(wire, `the send was ${sent}; on the wire: ${wire}`).to.not.contain('card-4111-1111');
  });
});

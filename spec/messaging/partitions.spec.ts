import { expect } from 'chai';
import amqp from 'amqplib';
import {
  GenericProducer,
  MessageHandler,
  MessageProcessor,
  type ExchangeObject,
  type MessageSender,
} from '../../lib/index.js';
import { partitionTopology, PARTITION_HEADER } from '../../lib/topology/partitions.js';
import { brokerUrl, closeConnectionsNamed } from '../support/broker.js';
import { postage } from '../support/cli.js';
import { counter, Harness } from '../support/components.js';
import { deleteTopology, unique } from '../support/topology.js';
import { FirstHandlings, outOfOrder, sendKeyed } from '../support/ordering.js';
import { settledSpread } from '../support/partitions.js';

const PARTITIONS = 8;

describe('partitioned processors (per-key order across replicas)', function () {
  this.timeout(120_000);

  it('splits each queue into named, durable partitions with single active consumer behind a consistent-hash exchange', () => {
    const ex: ExchangeObject = { name: 'orders-ex', type: 'topic' };
    const t = partitionTopology(
      [
        [
          ex,
          [
            ['orders', 'order.*'],
            ['orders', 'refund.*'],
          ],
        ],
      ],
      3,
    );
    expect(t.partitions.get('orders')).to.deep.equal(['orders.p0', 'orders.p1', 'orders.p2']);
    expect(t.routes.map((r) => [r.hash.name, r.key])).to.deep.equal([
      ['orders.partitions', 'order.*'],
      ['orders.partitions', 'refund.*'],
    ]);
    const [[hash, queues]] = t.eqk as unknown as Array<
      [ExchangeObject, Array<[{ name: string; flags: { arguments: Record<string, unknown> } }, string]>]
    >;
    expect(hash).to.deep.include({
      type: 'x-consistent-hash',
      durable: true,
      arguments: { 'hash-header': PARTITION_HEADER },
    });
    expect(queues.map(([q, key]) => [q.name, key, q.flags.arguments['x-single-active-consumer']])).to.deep.equal([
      ['orders.p0', '1', true],
      ['orders.p1', '1', true],
      ['orders.p2', '1', true],
    ]);
    expect(() => partitionTopology([[ex, [['', 'k']]]], 2)).to.throw(/needs named queues/);
    expect(() => partitionTopology([[ex, [[{ name: 'q', flags: { exclusive: true } }, 'k']]]], 2)).to.throw(
      /cannot be exclusive, auto-delete or non-durable/,
    );
    expect(() => partitionTopology([[ex, [['q', 'k']]]], 0)).to.throw(
      /partitions must be a whole number from 1 to 256, not 0/,
    );
  });

  it('refuses a _partition_key it cannot send, naming it', async () => {
    class P extends GenericProducer {
      static override eks = [[{ name: '', type: 'direct' }, 'nowhere'] as const];
      declare message_x: MessageSender;
    }
    const p = await P.create({ url: await brokerUrl() });
    try {
      const refusal = (send: Promise<void>) =>
        send.then(
          () => undefined,
          (err: unknown) => err as Error,
        );
      const empty = await refusal(p.message_x({}, { _partition_key: '' }));
      expect(empty).to.be.instanceOf(TypeError);
      expect(empty?.message).to.equal(
        '_partition_key must be a non-empty string or a finite number, not a string of 0 bytes',
      );
      expect((await refusal(p.message_x({}, { _partition_key: NaN })))?.message).to.equal(
        '_partition_key must be a non-empty string or a finite number, not null',
      );
    } finally {
      await p.close();
    }
  });

  it('spreads over three replicas, each key in order while one loses its connection and one closes', async () => {
    const url = await brokerUrl();
    const exchange: ExchangeObject = { name: unique('parts-ex'), type: 'direct' };
    const queue = unique('parts-q');
    const KEYS = 50;
    const N = 5000;
    const handled = new FirstHandlings();
    let all = counter(N);
    const h = new Harness();
    const share = new Map<string, number>();
    class Worker extends MessageProcessor {
      @MessageHandler('command', 'work')
      async work(content: { parameters: { key: string; seq: number } }) {
        const first = handled.take(content.parameters);
        if (first) share.set(this.fingerprint.pid, (share.get(this.fingerprint.pid) ?? 0) + 1);
        // A handler that waits (I/O), so that a replica holds work in flight when it goes.
        await new Promise((r) => setImmediate(r));
        if (first) all.hit();
      }
    }
    const replica = (i: number) =>
      new Worker({
        url,
        fingerprint: { name: 'worker', pid: `${process.pid}${i}` },
        connectionName: `${queue}-replica-${i}`,
        concurrency: 4,
        partitions: PARTITIONS,
        handleSignals: false,
        eqk: [[exchange, [[queue, 'work']]]],
      });
    const replicas = [replica(1), replica(2), replica(3)];
    await h.start(...replicas);
    class Sender extends GenericProducer {
      static override eks = [[exchange, 'work'] as const];
      declare message_work: MessageSender;
    }
    const sender = await Sender.create({ url });
    const names = Array.from({ length: PARTITIONS }, (_, i) => `${queue}.p${i}`);
    try {
      const halfway = counter(1500);
      const twoThirds = counter(3000);
      const progress = all;
      all = { ...progress, hit: () => (progress.hit(), halfway.hit(), twoThirds.hit()) };
      const sending = sendKeyed((p, o) => sender.message_work(p, o), N, KEYS, 250);
      await halfway.done;
      expect(await closeConnectionsNamed(`${queue}-replica-2`)).to.equal(1);
      await twoThirds.done;
      await replicas[2].close();
      await sending;
      await progress.done;
      expect(handled.seen.size).to.equal(N);
      // Each key's messages were first taken up in the order they were sent, across the moves.
      expect(outOfOrder(handled.starts)).to.deep.equal([]);
      // The work was shared, not left to the first replica.
      expect([...share.values()].filter((n) => n > 0).length, JSON.stringify([...share])).to.be.at.least(2);
      // describe says where each replica is active: the two survivors on four partitions each, all eight between them.
      const survivors = replicas.slice(0, 2);
      const described = await settledSpread(survivors, PARTITIONS);
      expect(described[0].partitions![0]).to.deep.include({ queue, partitions: names, rebalance: true });
      const active = described.flatMap((d) => d.partitions![0].activeHere);
      expect([...active].sort()).to.deep.equal([...names].sort());
      expect(described[0].partitions![0].replicas.map((r) => r.partitions.length)).to.deep.equal([4, 4]);
      // Every partition has a consumer: the survivors took over the closed replica's.
      const conn = await amqp.connect(url);
      try {
        const ch = await conn.createChannel();
        for (const n of names) expect((await ch.checkQueue(n)).consumerCount, n).to.be.greaterThan(0);
      } finally {
        await conn.close();
      }
      // And as an operator reads it: postage describe EXCHANGE KEY, answered by the replica active on the keyless
      // partition.
      const { code, stdout, stderr } = await postage(['describe', exchange.name, 'work'], { url });
      expect(code, stderr).to.equal(0);
      expect(stdout).to.contain(`partitions:\n  ${queue}: 8 partitions (${names.join(', ')}); active here: `);
      expect(stdout).to.contain('spread over 2 replicas:').and.contain('(this one): ').and.contain('waiting: ');
    } finally {
      await sender.close();
      await h.close();
      await deleteTopology(names, [`${queue}.partitions`, `${queue}.replicas`, exchange.name]);
    }
  });
});

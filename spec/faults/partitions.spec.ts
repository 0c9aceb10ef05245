/**
 * Faults around partitioned processors, on private RabbitMQ nodes (never the
 * shared broker): a broker without the consistent-hash plugin, and a
 * three-node cluster that loses a node while three replicas work through
 * quorum partition queues.
 */
import { expect } from 'chai';
import amqp from 'amqplib';
import {
  GenericProducer,
  MessageHandler,
  MessageProcessor,
  type ExchangeObject,
  type MessageSender,
} from '../../lib/index.js';
import { PrivateBroker } from '../support/private-broker.js';
import { counter, Harness } from '../support/components.js';
import { FirstHandlings, outOfOrder, sendKeyed } from '../support/ordering.js';

const PLUGIN = { enabled_plugins: '[rabbitmq_consistent_hash_exchange].\n' };

describe('fault: partitioned processors', function () {
  this.timeout(300_000);

  it('names the plugin partitions need, and the command that enables it, on a broker without it', async () => {
    const broker = await PrivateBroker.start(6000 + 3 * Math.floor(Math.random() * 30));
    try {
      class Worker extends MessageProcessor {}
      const w = new Worker({
        url: broker.url,
        partitions: 4,
        handleSignals: false,
        eqk: [[{ name: 'no-plugin-ex', type: 'direct' }, [['no-plugin-q', 'k']]]],
      });
      const err = await w.ready().then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      await w.close();
      expect(err?.message)
        .to.contain("cannot declare exchange 'no-plugin-q.partitions'")
        .and.contain('rabbitmq-plugins enable rabbitmq_consistent_hash_exchange (on every node of a cluster)');
    } finally {
      await broker.destroy();
    }
  });

  describe('on a three-node cluster with quorum partitions', () => {
    let nodes: PrivateBroker[] = [];
    before(async () => {
      nodes = await PrivateBroker.startCluster(3, 6200 + 3 * Math.floor(Math.random() * 60), { files: PLUGIN });
    });
    after(async () => {
      await Promise.all(nodes.map((n) => n.destroy()));
    });

    /** The node each named connection is on, from the connection's pid (`<node.N.M>`). */
    async function nodesOf(prefix: string, ask: PrivateBroker): Promise<string[]> {
      const out = await ask.ctl('list_connections', '-q', '--no-table-headers', 'pid', 'client_properties');
      return out
        .split('\n')
        .filter((l) => l.includes(`{"connection_name","${prefix}`))
        .map((l) => /<([^.>]+@[^.>]+)\./.exec(l)?.[1] ?? '?');
    }

    it('spreads the replicas over the nodes, loses no confirmed message when one is killed, and keeps each key in order', async () => {
      const url = nodes.map((n) => n.url).join(',');
      const exchange: ExchangeObject = { name: 'cluster-parts', type: 'direct' };
      const queue = 'cluster-work';
      const KEYS = 30;
      const N = 3000;
      const handled = new FirstHandlings();
      const all = counter(N);
      const halfway = counter(N / 3);
      const h = new Harness();
      class Worker extends MessageProcessor {
        @MessageHandler('command', 'work')
        async work(content: { parameters: { key: string; seq: number } }) {
          if (!handled.take(content.parameters)) return;
          await new Promise((r) => setImmediate(r));
          all.hit();
          halfway.hit();
        }
      }
      const replicas = [1, 2, 3].map(
        (i) =>
          new Worker({
            url,
            fingerprint: { name: 'worker', pid: `${process.pid}${i}` },
            connectionName: `parts-replica-${i}`,
            concurrency: 4,
            partitions: 8,
            handleSignals: false,
            eqk: [[exchange, [[{ name: queue, flags: { queueType: 'quorum' } }, 'work']]]],
          }),
      );
      await h.start(...replicas);
      // Three connections given the same three nodes do not all land on the first one.
      expect(new Set(await nodesOf('parts-replica-', nodes[0])).size).to.be.greaterThan(1);
      class Sender extends GenericProducer {
        static override eks = [[exchange, 'work'] as const];
        declare message_work: MessageSender;
      }
      const sender = await Sender.create({ url, whileDisconnected: 'buffer', connectionName: 'parts-sender' });
      const confirmed = new Set<string>();
      try {
        const sending = sendKeyed(
          (p, o) => sender.message_work(p, o),
          N,
          KEYS,
          100,
          (id) => confirmed.add(id),
        );
        await halfway.done;
        // A crash of a node that holds some replica's connection (and some partitions' leaders).
        const [victimNode] = await nodesOf('parts-replica-', nodes[0]);
        const victim = nodes.find((n) => n.node === victimNode)!;
        await victim.kill();
        await sending;
        await all.done;
        expect(confirmed.size).to.equal(N);
        expect([...confirmed].filter((id) => !handled.seen.has(id))).to.deep.equal([]);
        expect(outOfOrder(handled.starts)).to.deep.equal([]);
        // The survivors consume every partition, once the replica that lost its node is back on another (polled: the
        // spread follows announcements on the broker, which give the spec no event).
        const alive = nodes.find((n) => n !== victim)!;
        const conn = await amqp.connect(alive.url);
        try {
          const ch = await conn.createChannel();
          const deadline = Date.now() + 30_000;
          let idle: string[] = [];
          do {
            idle = [];
            for (let i = 0; i < 8; i++)
              if ((await ch.checkQueue(`${queue}.p${i}`)).consumerCount === 0) idle.push(`${queue}.p${i}`);
            if (idle.length > 0) await new Promise((r) => setTimeout(r, 200));
          } while (idle.length > 0 && Date.now() < deadline);
          expect(idle, 'partitions without a consumer after 30 s').to.deep.equal([]);
        } finally {
          await conn.close();
        }
      } finally {
        await sender.close();
        await h.close();
      }
    });
  });
});

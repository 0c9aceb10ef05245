import { expect } from 'chai';
import amqp from 'amqplib';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import {
  BrokerError,
  TopologyError,
  GenericConsumer,
  GenericProducer,
  MessageProcessor,
  MessageResult,
  type ConsumeMessage,
  type ExchangeObject,
} from '../../lib/index.js';
import { brokerUrl, queueCounts } from '../support/broker.js';
import { deferred } from '../support/components.js';
import { deleteTopology, publishRaw, unique } from '../support/topology.js';
import { until, within } from '../support/wait.js';

describe('GenericConsumer', () => {
  let url: string;
  let ex: ExchangeObject;
  let queue: string;
  const closers: Array<() => Promise<unknown>> = [];

  beforeEach(async () => {
    url = await brokerUrl();
    ex = { name: unique('ex'), type: 'direct', durable: false };
    queue = unique('q');
  });
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c();
    await deleteTopology([queue], [ex.name]);
  });

  function consumer(opts: { prefetch?: number } = {}) {
    const c = new GenericConsumer({ url, eqk: [[ex, [[queue, 'a']]]], ...opts });
    closers.push(() => c.close());
    return c;
  }

  it('declares its eqk on ready() (static eqk by default), with durable queues unless flagged otherwise', async () => {
    const exchange = ex;
    const q = queue;
    class EchoConsumer extends GenericConsumer {
      static override eqk = [[exchange, [[q, 'a']]]] as const;
    }
    const c = new EchoConsumer({ url });
    closers.push(() => c.close());
    await c.ready();
    const conn = await amqp.connect(url);
    const ch = await conn.createChannel();
    const ok = await ch.checkQueue(queue);
    await conn.close();
    expect(ok.queue).to.equal(queue);
    expect(c.queues).to.deep.equal([queue]);
  });

  it('fails ready() with a PRECONDITION_FAILED BrokerError saying what to do when a queue exists with other arguments', async () => {
    const conn = await amqp.connect(url);
    const ch = await conn.createChannel();
    await ch.assertQueue(queue, { durable: true, arguments: { 'x-max-length': 5 } });
    await conn.close();
    const c = consumer();
    let err: unknown;
    await c.ready().catch((e) => (err = e));
    expect(err).to.be.instanceOf(BrokerError);
    expect((err as BrokerError).code).to.equal('PRECONDITION_FAILED');
    expect((err as BrokerError).amqpCode).to.equal(406);
    expect((err as Error).message)
      .to.contain(`queue '${queue}'`)
      .and.contain('x-max-length')
      .and.contain('same ones');
  });

  it('gives the same PRECONDITION_FAILED BrokerError, hint included, from a producer and a processor declaring an exchange that exists with other flags', async () => {
    const name = unique('ex406');
    const conn = await amqp.connect(url);
    const ch = await conn.createChannel();
    await ch.assertExchange(name, 'fanout', { durable: false });
    try {
      const clash = { name, type: 'direct', durable: false };
      class P extends GenericProducer {
        static override eks = [[clash, 'k'] as const];
      }
      const fromProducer = await P.create({ url }).then(
        () => undefined,
        (e: unknown) => e as BrokerError,
      );
      const processor = new MessageProcessor({ url, eqk: [[clash, [[unique('q406'), 'k']]]] });
      const fromProcessor = await processor.ready().then(
        () => undefined,
        (e: unknown) => e as BrokerError,
      );
      await processor.close();
      for (const err of [fromProducer, fromProcessor]) {
        expect(err).to.be.instanceOf(BrokerError);
        expect(err!.code).to.equal('PRECONDITION_FAILED');
        expect(err!.amqpCode).to.equal(406);
        expect(err!.message)
          .to.contain(`exchange '${name}'`)
          .and.contain("inequivalent arg 'type'")
          .and.contain('rabbitmqadmin delete exchange');
      }
      expect(fromProducer!.message).to.equal(fromProcessor!.message);
    } finally {
      await conn.createChannel().then((c) => c.deleteExchange(name));
      await conn.close();
    }
  });

  it('names only commands that exist in its hints', async () => {
    const { stdout } = await promisify(execFile)('rabbitmqctl', ['help']);
    for (const cmd of ['delete_queue', 'add_vhost', 'set_permissions'])
      expect(stdout, cmd).to.match(new RegExp(`\\b${cmd}\\b`));
    // rabbitmqadmin ships with RabbitMQ (it talks to the management plugin).
    const admin = await promisify(execFile)('rabbitmqadmin', ['help', 'subcommands']).then(
      (r) => r.stdout,
      (e: { stdout?: string }) => e.stdout ?? '',
    );
    expect(admin).to.contain('delete exchange name=');
  });

  it("takes Python Postage's snake_case auto_delete queue flag, and refuses flags it does not know, naming their spelling", async () => {
    const name = unique('q-ported');
    const c = new GenericConsumer({
      url,
      eqk: [[ex, [[{ name, flags: { auto_delete: true, durable: false } }, 'k']]]],
    });
    await c.ready();
    const conn = await amqp.connect(url);
    try {
      // Redeclaring with the same flags passes only if auto_delete was honoured (else 406).
      const ch = await conn.createChannel();
      await ch.assertQueue(name, { autoDelete: true, durable: false });
      await ch.deleteQueue(name);
    } finally {
      await conn.close();
      await c.close();
    }
    const typo = new GenericConsumer({
      url,
      eqk: [[ex, [[{ name: unique('q-typo'), flags: { is_exclusive: true } as never }, 'k']]]],
    });
    const err = await typo.ready().catch((e: Error) => e);
    await typo.close();
    expect(err).to.be.instanceOf(TopologyError);
    expect((err as Error).message)
      .to.contain("unknown flag 'is_exclusive'")
      .and.contain('the flags are durable, exclusive, autoDelete, arguments');
  });

  it('binds and unbinds keys at run time', async () => {
    const c = consumer();
    const got: string[] = [];
    let arrived = deferred();
    await c.startConsuming((m) => {
      got.push(m.fields.routingKey);
      c.ack(m);
      arrived.resolve();
    });
    await c.queueBind(ex, queue, 'b');
    await publishRaw(ex.name, 'b', Buffer.from('{}'));
    await arrived.promise;
    await c.queueUnbind(ex, queue, 'b');
    arrived = deferred();
    await publishRaw(ex.name, 'b', Buffer.from('{}'));
    await publishRaw(ex.name, 'a', Buffer.from('{}'));
    await arrived.promise;
    expect(got).to.deep.equal(['b', 'a']);
  });

  for (const prefetch of [1, 3]) {
    it(`holds at most prefetch=${prefetch} unacked deliveries`, async () => {
      const c = consumer(prefetch === 1 ? {} : { prefetch });
      await c.ready();
      for (let i = 0; i < 5; i++) await publishRaw(ex.name, 'a', Buffer.from(String(i)));
      const held: ConsumeMessage[] = [];
      const enough = deferred();
      await c.startConsuming((m) => {
        held.push(m);
        if (held.length === prefetch) enough.resolve();
      });
      await within(enough.promise, { message: `${prefetch} deliveries held` });
      // The broker's own counts: what it sent (unacked) is all there is to come, so nothing more can arrive.
      const counts = await until(
        async () => {
          const q = await queueCounts(queue);
          return q && q.ready + q.unacked === 5 && q;
        },
        { message: 'the broker counting all five messages' },
      );
      expect(counts).to.deep.include({ ready: 5 - prefetch, unacked: prefetch });
      expect(held.length).to.equal(prefetch);
      for (const m of held) c.ack(m);
    });
  }

  it('wraps a bare value in MessageResult in rpcReply', async () => {
    const c = consumer();
    const conn = await amqp.connect(url);
    closers.push(() => conn.close());
    const ch = await conn.createChannel();
    const { queue: replyQ } = await ch.assertQueue('', { exclusive: true });
    const reply = deferred<Record<string, unknown>>();
    await ch.consume(replyQ, (m) => m && reply.resolve(JSON.parse(m.content.toString())), { noAck: true });
    await c.startConsuming((m) => {
      c.rpcReply(m, 42);
      c.ack(m);
    });
    await publishRaw(ex.name, 'a', Buffer.from('{}'), { replyTo: replyQ });
    expect(await reply.promise).to.deep.equal(new MessageResult(42).body);
  });

  it('rejects with or without requeue', async () => {
    const c = consumer();
    const seen: boolean[] = [];
    const twice = deferred();
    await c.startConsuming((m) => {
      seen.push(m.fields.redelivered);
      if (!m.fields.redelivered) c.reject(m, true);
      else {
        c.reject(m, false);
        twice.resolve();
      }
    });
    await publishRaw(ex.name, 'a', Buffer.from('{}'));
    await twice.promise;
    expect(seen).to.deep.equal([false, true]);
  });
});

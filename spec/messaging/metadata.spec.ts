import { expect } from 'chai';
import amqp from 'amqplib';
import {
  CONVERSATION_HEADERS,
  currentDelivery,
  GenericProducer,
  Handler,
  MessageHandler,
  MessageProcessor,
  RpcHandler,
  sleep,
  type DeliveryInfo,
  type MessageSender,
  type RpcSender,
} from '../../lib/index.js';
import { counter, deferred, dropConnection, exchangeFixture } from '../support/components.js';
import { deleteTopology, getOne, unique } from '../support/topology.js';

describe('message metadata', function () {
  this.timeout(30_000);
  const f = exchangeFixture('md');

  /**
   * Publishes an envelope as any AMQP client would, with a reply queue of its own, and resolves with the reply as that
   * client sees it.
   */
  async function askRaw(
    envelope: { type: string; name: string; category: string },
    props: amqp.Options.Publish,
  ): Promise<amqp.ConsumeMessage> {
    const conn = await amqp.connect(f.url);
    f.h.onClose(() => conn.close());
    const ch = await conn.createChannel();
    const { queue: replies } = await ch.assertQueue('', { exclusive: true });
    const got = deferred<amqp.ConsumeMessage>();
    await ch.consume(replies, (m) => m && got.resolve(m), { noAck: true });
    const body = { ...envelope, version: '2', fingerprint: {}, content: { parameters: {} }, _reserved: {} };
    ch.publish(f.ex.name, 'k', Buffer.from(JSON.stringify(body)), { ...props, replyTo: replies });
    return got.promise;
  }

  async function sender(key = 'k') {
    const exchange = f.ex;
    class Sender extends GenericProducer {
      static override eks = [[exchange, key] as const];
      declare message_job: MessageSender;
      declare rpc_ask: RpcSender;
    }
    const p = await Sender.create({ url: f.url });
    f.h.onClose(() => p.close());
    return p;
  }

  async function declareQueue(): Promise<void> {
    const conn = await amqp.connect(f.url);
    const ch = await conn.createChannel();
    await ch.assertExchange(f.ex.name, 'direct', { durable: false });
    await ch.assertQueue(f.queue, { arguments: { 'x-max-priority': 10 } });
    await ch.bindQueue(f.queue, f.ex.name, 'k');
    await conn.close();
  }

  it('puts each send option on the wire as the AMQP property any consumer reads, with a timestamp', async () => {
    await declareQueue();
    const p = await sender();
    const before = Math.floor(Date.now() / 1000);
    await p.message_job(
      { n: 1 },
      {
        _headers: { tenant: 'acme', tries: 2, tags: ['a', 'b'], nested: { ok: true } },
        _expiration: 60_000,
        _priority: 5,
        _correlation_id: 'corr-1',
        _message_id: 'msg-1',
        _type: 'job',
      },
    );
    const m = (await getOne(f.queue)) as amqp.GetMessage;
    expect(m.properties).to.include({
      expiration: '60000',
      priority: 5,
      correlationId: 'corr-1',
      messageId: 'msg-1',
      type: 'job',
      contentType: 'application/json',
      deliveryMode: 2,
    });
    expect(m.properties.headers).to.deep.include({ tenant: 'acme', tries: 2, tags: ['a', 'b'], nested: { ok: true } });
    // A message sent outside a handler starts a conversation of its own: its id is the conversation's, no header
    // needed.
    expect(m.properties.headers).not.to.have.property(CONVERSATION_HEADERS.conversationId);
    expect(m.properties.timestamp).to.be.within(before, before + 5);
  });

  it('refuses, naming the option, what AMQP cannot carry or does not allow, and sends nothing', async () => {
    await declareQueue();
    const p = await sender();
    const refused = async (send: Promise<unknown>) =>
      send.then(
        () => 'sent',
        (e: Error) => `${e.name}: ${e.message}`,
      );
    expect(await refused(p.message_job({}, { _headers: { when: new Date() } }))).to.match(
      /^TypeError: _headers: when is .* AMQP cannot carry/,
    );
    expect(await refused(p.message_job({}, { _headers: { big: 10n } as never }))).to.match(
      /_headers: big is the bigint 10n/,
    );
    expect(await refused(p.message_job({}, { _headers: { deep: [{ f: () => 1 }] } }))).to.match(
      /_headers: deep\[0\]\.f is a function/,
    );
    expect(await refused(p.message_job({}, { _priority: 256 }))).to.match(
      /_priority must be a whole number from 0 to 255/,
    );
    expect(await refused(p.message_job({}, { _expiration: -1 }))).to.match(
      /_expiration must be a whole number of milliseconds/,
    );
    expect(await refused(p.message_job({}, { _message_id: '' }))).to.match(/_message_id must be a non-empty string/);
    expect(await refused(p.rpc_ask({}, { _correlation_id: 'mine' }))).to.match(
      /_correlation_id cannot be set on an RPC/,
    );
    // Sent nothing: a fence sent after them is the first message in the queue (one channel's order is kept).
    await p.message_job({ fence: true });
    const first = await getOne(f.queue);
    expect(first && JSON.parse(first.content.toString()).content.parameters).to.deep.equal({ fence: true });
  });

  it('gives every handler kind the delivery it is handling, across await and yield', async () => {
    const seen: Record<string, DeliveryInfo | undefined> = {};
    const done = counter(5);
    const note = (kind: string) => {
      seen[kind] = currentDelivery();
      done.hit();
    };
    class Probe extends MessageProcessor {
      @MessageHandler('command', 'plain')
      plain() {
        note('plain');
      }
      @MessageHandler('command', 'async')
      async later() {
        await sleep(5);
        note('async');
      }
      @MessageHandler('command', 'generator')
      *gen() {
        yield sleep(5);
        note('generator');
      }
      @MessageHandler('command', 'class')
      static Cls = class extends Handler {
        call() {
          seen.classField = this.delivery;
          note('class');
        }
      };
      @RpcHandler('command', 'ask')
      async ask() {
        await sleep(5);
        note('rpc');
        return 'ok';
      }
    }
    await f.h.start(new Probe({ url: f.url, eqk: [[f.ex, [[f.queue, 'k']]]] }));
    const p = await sender();
    for (const name of ['plain', 'async', 'generator', 'class'])
      await (p as unknown as Record<string, MessageSender>)[`message_${name}`](
        {},
        { _message_id: `id-${name}`, _headers: { kind: name } },
      );
    expect((await p.rpc_ask({}, { _message_id: 'id-rpc', _timeout: 5 })).ok).to.equal(true);
    await done.done;
    for (const [kind, id] of [
      ['plain', 'id-plain'],
      ['async', 'id-async'],
      ['generator', 'id-generator'],
      ['class', 'id-class'],
      ['rpc', 'id-rpc'],
    ]) {
      expect(seen[kind]?.messageId, kind).to.equal(id);
      expect(seen[kind]?.exchange, kind).to.equal(f.ex.name);
      expect(seen[kind]?.routingKey, kind).to.equal('k');
      expect(seen[kind]?.redelivered, kind).to.equal(false);
      expect(seen[kind]?.timestamp, kind).to.be.instanceOf(Date);
    }
    expect(seen.plain?.headers.kind).to.equal('plain');
    expect(seen.classField?.messageId).to.equal('id-class');
    expect(seen.rpc?.correlationId).to.be.a('string');
    expect(currentDelivery()).to.equal(undefined);
  });

  it("reads a quorum queue's delivery count", async () => {
    const counts: Array<number | undefined> = [];
    const twice = deferred();
    class Fragile extends MessageProcessor {
      @MessageHandler('command', 'job')
      async job() {
        counts.push(currentDelivery()?.deliveryCount);
        if (counts.length === 1) {
          dropConnection(this);
          await sleep(10);
        } else twice.resolve();
      }
    }
    const q = { name: f.queue, flags: { durable: true, arguments: { 'x-queue-type': 'quorum' } } };
    await f.h.start(new Fragile({ url: f.url, reconnect: { initialMs: 20, maxMs: 100 }, eqk: [[f.ex, [[q, 'k']]]] }));
    await (await sender()).message_job({});
    await twice.promise;
    expect(counts).to.deep.equal([undefined, 2]);
  });

  it('carries a conversation on: a message sent while handling another keeps its conversation id and names it as the cause; so does an RPC and its reply', async () => {
    const seen: Record<string, DeliveryInfo | undefined> = {};
    const finished = deferred();
    const q2 = unique('md-q2');
    const exchange = f.ex;
    class Onward extends GenericProducer {
      static override eks = [[exchange, 'second'] as const];
      declare rpc_ask: RpcSender;
      declare message_last: MessageSender;
    }
    const onward = await Onward.create({ url: f.url });
    f.h.onClose(() => onward.close());
    class First extends MessageProcessor {
      @MessageHandler('command', 'job')
      async job() {
        seen.job = currentDelivery();
        await onward.rpc_ask({}, { _timeout: 5 });
        await onward.message_last({});
      }
    }
    class Second extends MessageProcessor {
      @RpcHandler('command', 'ask')
      ask() {
        seen.ask = currentDelivery();
        return 'fine';
      }
      @MessageHandler('command', 'last')
      last() {
        seen.last = currentDelivery();
        finished.resolve();
      }
    }
    await f.h.start(
      new First({ url: f.url, eqk: [[f.ex, [[f.queue, 'k']]]] }),
      new Second({ url: f.url, eqk: [[f.ex, [[q2, 'second']]]] }),
    );
    f.h.onClose(() => deleteTopology([q2]));
    await (await sender()).message_job({}, { _message_id: 'origin' });
    await finished.promise;
    expect(seen.job?.conversationId).to.equal('origin');
    expect(seen.job?.causationId).to.equal(undefined);
    expect(seen.ask?.conversationId).to.equal('origin');
    expect(seen.ask?.causationId).to.equal('origin');
    expect(seen.last?.conversationId).to.equal('origin');
    expect(seen.last?.causationId).to.equal('origin');
    expect(seen.ask?.messageId).to.be.a('string').and.not.equal(seen.last?.messageId);
  });

  it("answers an RPC with its request's correlation id, and, in a conversation, the conversation and its cause, as any AMQP client reads them", async () => {
    class Answers extends MessageProcessor {
      @RpcHandler('command', 'ask')
      ask() {
        return 42;
      }
    }
    await f.h.start(new Answers({ url: f.url, eqk: [[f.ex, [[f.queue, 'k']]]] }));
    const reply = await askRaw(
      { type: 'command', name: 'ask', category: 'rpc' },
      { correlationId: 'call-7', messageId: 'req-7', headers: { [CONVERSATION_HEADERS.conversationId]: 'conv-7' } },
    );
    expect(reply.properties.correlationId).to.equal('call-7');
    expect(reply.properties.headers).to.include({
      [CONVERSATION_HEADERS.conversationId]: 'conv-7',
      [CONVERSATION_HEADERS.causationId]: 'req-7',
    });
    expect(JSON.parse(reply.content.toString()).content.value).to.equal(42);
  });

  it('lets a message handler answer a plain message that carried reply_to (a reply, not an RPC)', async () => {
    class Answers extends MessageProcessor {
      @MessageHandler('command', 'job')
      job(_content: unknown, reply: (r: unknown) => void) {
        reply({ done: true });
      }
    }
    await f.h.start(new Answers({ url: f.url, eqk: [[f.ex, [[f.queue, 'k']]]] }));
    const reply = await askRaw({ type: 'command', name: 'job', category: 'message' }, { correlationId: 'job-1' });
    expect(reply.properties.correlationId).to.equal('job-1');
    const body = JSON.parse(reply.content.toString());
    expect(body).to.deep.include({ type: 'result', category: 'message' });
    expect(body.content).to.deep.include({ type: 'success', value: { done: true } });
  });
});

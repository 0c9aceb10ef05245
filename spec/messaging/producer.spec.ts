import { expect } from 'chai';
import amqp from 'amqplib';
import {
  BrokerError,
  GenericProducer,
  MessageCommand,
  MessageResult,
  MessageResultError,
  MessageResultException,
  MessageProcessor,
  MessageStatus,
  RpcCommand,
  type SendOptions,
  type MessageSender,
  RpcHandler,
  type ExchangeObject,
} from '../../lib/index.js';
import { brokerUrl, queueCounts } from '../support/broker.js';
import { capture } from '../support/log.js';
import { deferred, Harness } from '../support/components.js';
import { deleteTopology, getOne, queueState, unique } from '../support/topology.js';
import { until, within } from '../support/wait.js';

const POSTAGE_KEYS = ['type', 'name', 'category', 'version', 'fingerprint', 'content', '_reserved'];

describe('GenericProducer', () => {
  let url: string;
  let ex: ExchangeObject;
  let q1: string;
  let q2: string;
  let raw: amqp.ChannelModel;
  let ch: amqp.Channel;

  before(async () => {
    url = await brokerUrl();
    raw = await amqp.connect(url);
  });
  after(async () => raw.close());

  beforeEach(async () => {
    ex = { name: unique('ex'), type: 'direct', durable: false, autoDelete: false };
    q1 = unique('q1');
    q2 = unique('q2');
    ch = await raw.createChannel();
    await ch.assertExchange(ex.name, 'direct', { durable: false });
    await ch.assertQueue(q1);
    await ch.assertQueue(q2);
    await ch.bindQueue(q1, ex.name, 'k1');
    await ch.bindQueue(q2, ex.name, 'k2');
  });
  afterEach(async () => {
    await ch.close();
    await deleteTopology([q1, q2], [ex.name]);
  });

  function producerClass() {
    const exchange = ex;
    return class Pinger extends GenericProducer {
      static override eks = [[exchange, 'k1'] as const, [exchange, 'k2'] as const];
      build_message_ping(n: number) {
        return new MessageCommand('ping', { n });
      }
      build_rpc_echo(text: string) {
        return new RpcCommand('echo', { text });
      }
      declare message_anything: MessageSender;
    };
  }

  it('sends message_NAME to every (exchange, key) in eks, persistent, with Postage keys and its fingerprint', async () => {
    const p = await producerClass().create({ url, fingerprint: { name: 'pinger', type: 'test' } });
    try {
      await p.message_ping(7);
      for (const q of [q1, q2]) {
        const m = await getOne(q);
        expect(m, `a message in ${q}`).to.not.equal(false);
        if (!m) return;
        expect(m.properties.deliveryMode).to.equal(2);
        expect(m.properties.contentType).to.equal('application/json');
        const body = JSON.parse(m.content.toString());
        expect(Object.keys(body)).to.deep.equal(POSTAGE_KEYS);
        expect(body).to.deep.include({
          type: 'command',
          name: 'ping',
          category: 'message',
          version: '2',
          content: { parameters: { n: 7 } },
        });
        expect(body.fingerprint).to.include({ name: 'pinger', type: 'test', pid: String(process.pid) });
      }
    } finally {
      await p.close();
    }
  });

  it('says to use create() when a send comes before it ever connected (new without create)', async () => {
    const Pinger = producerClass();
    const p = new Pinger({ url });
    const err = await p.message_anything({}).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(BrokerError).and.include({ code: 'NOT_CONNECTED' });
    expect((err as Error).message)
      .to.equal(
        'Pinger was never connected: build it with `await Pinger.create()` ' +
          '(or call `await producer.connect()` after new)',
      )
      .and.not.contain('reconnecting');
    await p.close();
  });

  it('names its fingerprint after its class, type producer, when none is given', async () => {
    const p = await producerClass().create({ url });
    try {
      expect(p.fingerprint).to.include({ name: 'Pinger', type: 'producer', pid: String(process.pid) });
      await p.message_ping(1);
      const m = await getOne(q1);
      expect(m && JSON.parse(m.content.toString()).fingerprint).to.include({ name: 'Pinger', type: 'producer' });
    } finally {
      await p.close();
    }
  });

  it('sends to the default exchange with _key, and to _eks instead of its own', async () => {
    const p = await producerClass().create({ url });
    try {
      await p.message_ping(1, { _key: 'k2' });
      // Confirmed, so routed: had it gone to q1 it would be counted there now.
      expect((await queueState(q1)).messages).to.equal(0);
      expect(JSON.parse(((await getOne(q2)) as amqp.GetMessage).content.toString()).content.parameters.n).to.equal(1);
      await p.message_ping(2, { _eks: [[ex, 'k1']], _key: 'k2' });
      expect(JSON.parse(((await getOne(q1)) as amqp.GetMessage).content.toString()).content.parameters.n).to.equal(2);
    } finally {
      await p.close();
    }
  });

  it('sends MessageCommand(NAME, params) for a name without a builder', async () => {
    const p = await producerClass().create({ url });
    try {
      await p.message_anything({ a: 1 }, { _key: 'k1' });
      const body = JSON.parse(((await getOne(q1)) as amqp.GetMessage).content.toString());
      expect(body).to.deep.include({
        type: 'command',
        name: 'anything',
        category: 'message',
        content: { parameters: { a: 1 } },
      });
    } finally {
      await p.close();
    }
  });

  it('sends a plain Message with message(), and a body unchanged with forward()', async () => {
    const p = await producerClass().create({ url });
    try {
      await p.message([1, 'two'], { three: 3 }, { _key: 'k1' });
      const body = JSON.parse(((await getOne(q1)) as amqp.GetMessage).content.toString());
      expect(body).to.deep.include({ type: 'none', content: { args: [1, 'two'], kwds: { three: 3 } } });
      const original = new MessageCommand('fwd', { x: 1 }).setFingerprint({ name: 'someone-else' }).body;
      await p.forward(original, { _key: 'k1' });
      expect(JSON.parse(((await getOne(q1)) as amqp.GetMessage).content.toString())).to.deep.equal(original);
    } finally {
      await p.close();
    }
  });

  it('rejects message_NAME with a BrokerError when the broker nacks it', async () => {
    const full = unique('full');
    await ch.assertQueue(full, { arguments: { 'x-max-length': 1, 'x-overflow': 'reject-publish' } });
    await ch.bindQueue(full, ex.name, 'full');
    const p = await producerClass().create({ url });
    try {
      await p.message_ping(1, { _key: 'full' });
      let err: unknown;
      await p.message_ping(2, { _key: 'full' }).catch((e) => (err = e));
      expect(err).to.be.instanceOf(BrokerError);
      expect((err as BrokerError).code).to.equal('NACK');
      expect((err as Error).message).to.contain(`${ex.name}/full`);
    } finally {
      await p.close();
      await deleteTopology([full]);
    }
  });

  it('goes on publishing on a new channel after a nack, and keeps its RPCs in flight', async () => {
    const full = unique('full');
    await ch.assertQueue(full, { arguments: { 'x-max-length': 1, 'x-overflow': 'reject-publish' } });
    await ch.bindQueue(full, ex.name, 'full');
    const { lines, logger } = capture('warn');
    const p = await producerClass().create({ url, logger });
    const channels = () =>
      (p.connection as unknown as { connection: { channels: unknown[] } }).connection.channels.filter(Boolean).length;
    try {
      await p.message_ping(1, { _key: 'full' });
      const before = channels();
      // Nobody answers this RPC (and no queue takes it, allowed here): it is in flight across the renewal, and must not
      // be failed by it.
      const rpc = p.rpc_echo('x', { _key: 'nobody', _timeout: 0.5, _max_retry: 0, _mandatory: false });
      await p.message_ping(2, { _key: 'full' }).catch(() => undefined);
      await ch.purgeQueue(full);
      // The renewal swaps channels in the background; a send once it is done lands on the new one.
      for (let i = 0; i < 100 && !lines.some((l) => l.includes('new channel')); i++)
        await new Promise((r) => setTimeout(r, 10));
      expect(lines.some((l) => l.includes('publishing goes on on a new channel'))).to.equal(true);
      await p.message_ping(3, { _key: 'full' });
      const m = await getOne(full);
      expect(m && JSON.parse(m.content.toString()).content.parameters.n).to.equal(3);
      expect(channels()).to.equal(before);
      expect((await rpc).body.content.value).to.equal('TimeoutError');
    } finally {
      await p.close();
      await deleteTopology([full]);
    }
  });

  it('rejects message_NAME with an UNROUTABLE BrokerError when no queue takes it, and still delivers to the targets that do', async () => {
    const p = await producerClass().create({ url });
    try {
      let err: unknown;
      await p.message_ping(1, { _key: 'nobody-listens' }).catch((e) => (err = e));
      expect(err).to.be.instanceOf(BrokerError);
      expect((err as BrokerError).code).to.equal('UNROUTABLE');
      expect((err as Error).message).to.contain(`'${ex.name}' with key 'nobody-listens'`);
      err = undefined;
      await p
        .message_ping(2, {
          _eks: [
            [ex, 'k1'],
            [ex, 'nobody-listens'],
            [ex, 'nobody-either'],
          ],
        })
        .catch((e) => (err = e));
      expect((err as BrokerError).code).to.equal('UNROUTABLE');
      expect((err as BrokerError).unroutable).to.deep.equal([
        { exchange: ex.name, key: 'nobody-listens' },
        { exchange: ex.name, key: 'nobody-either' },
      ]);
      expect((err as Error).message)
        .to.contain("key 'nobody-listens'")
        .and.contain("key 'nobody-either'");
      const m = (await getOne(q1)) as amqp.GetMessage;
      expect(JSON.parse(m.content.toString()).content.parameters.n).to.equal(2);
      expect(m.properties.messageId).to.be.a('string').and.not.empty;
      // Routable messages still resolve.
      await p.message_ping(3);
    } finally {
      await p.close();
    }
  });

  it('fails an RPC that no queue takes at once with UNROUTABLE, instead of waiting out its timeout and retries', async () => {
    const p = await producerClass().create({ url });
    try {
      const started = Date.now();
      const err = await p.rpc_echo('x', { _key: 'nobody-serves', _timeout: 30, _max_retry: 4 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).to.be.instanceOf(BrokerError);
      expect((err as BrokerError).code).to.equal('UNROUTABLE');
      expect((err as BrokerError).unroutable).to.deep.equal([{ exchange: ex.name, key: 'nobody-serves' }]);
      expect(Date.now() - started).to.be.below(5000);
    } finally {
      await p.close();
    }
  });

  it('rejects an RPC in flight with a BrokerError CLOSED when its producer closes: only what the remote side says resolves', async () => {
    const p = await producerClass().create({ url });
    // q1 takes the request, and nobody consumes q1: the call is in flight until the close.
    const outcome = p.rpc_echo('x', { _key: 'k1', _timeout: 30 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    // In flight: the request is on q1 (the broker counts it there) before the producer closes.
    await until(async () => (await queueCounts(q1))?.ready === 1, { message: 'the request waiting on q1' });
    await p.close();
    const err = await outcome;
    expect(err).to.be.instanceOf(BrokerError);
    expect((err as BrokerError).code).to.equal('CLOSED');
    expect((err as Error).message).to.contain(`RPC to ${ex.name}/k1 lost: the producer was closed`);
  });

  it("sends a payload whose keys all start with '_' (a MongoDB { _id }) as the payload, never as send options", async () => {
    const exchange = ex;
    class Store extends GenericProducer {
      static override eks = [[exchange, 'k1'] as const];
      build_message_doc(doc: Record<string, unknown>) {
        return new MessageCommand('doc', doc);
      }
      declare message_any: MessageSender;
    }
    const p = await Store.create({ url });
    try {
      await p.message_doc({ _id: 42 });
      await p.message_any({ _id: 43, _rev: '1' });
      await p.message_doc({ _id: 44 }, { _key: 'k2' });
      const params = async (q: string) => {
        const m = await getOne(q);
        return m && JSON.parse(m.content.toString()).content.parameters;
      };
      expect(await params(q1)).to.deep.equal({ _id: 42 });
      expect(await params(q1)).to.deep.equal({ _id: 43, _rev: '1' });
      expect(await params(q2)).to.deep.equal({ _id: 44 });
      // Half options, half not: refused, never half dropped.
      const err = await p.message_any({ _key: 'k2', _id: 45 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).to.be.instanceOf(TypeError);
      expect((err as Error).message).to.contain("mixes send options ('_key') with keys that are none ('_id')");
      // Past the builder's parameters, an option that does not exist is still an error.
      expect(await p.message_doc({ a: 1 }, { _kee: 'k2' } as SendOptions).catch((e: Error) => e.message)).to.contain(
        "unknown send option '_kee'",
      );
    } finally {
      await p.close();
    }
  });

  it('sends statuses, results and plain messages that nobody subscribes to without error (publish/subscribe)', async () => {
    const p = await producerClass().create({ url });
    try {
      await p.forward(new MessageStatus('alive').body, { _key: 'nobody-listens' });
      await p.forward(new MessageResult(1).body, { _key: 'nobody-listens' });
      await p.message([1], { a: 1 }, { _key: 'nobody-listens' });
    } finally {
      await p.close();
    }
  });

  it('lets _mandatory on a send, or a static mandatory on the producer class, override the routing policy', async () => {
    const Cls = producerClass();
    const p = await Cls.create({ url });
    class Strict extends Cls {
      static override mandatory = true;
    }
    const strict = await Strict.create({ url });
    try {
      await p.message_ping(1, { _key: 'nobody-listens', _mandatory: false });
      const err = await p
        .forward(new MessageStatus('alive').body, { _key: 'nobody-listens', _mandatory: true })
        .catch((e: BrokerError) => e);
      expect(err).to.be.instanceOf(BrokerError).with.property('code', 'UNROUTABLE');
      const strictErr = await strict
        .forward(new MessageStatus('alive').body, { _key: 'nobody-listens' })
        .catch((e: BrokerError) => e);
      expect(strictErr).to.be.instanceOf(BrokerError).with.property('code', 'UNROUTABLE');
    } finally {
      await p.close();
      await strict.close();
    }
  });

  it('refuses a send option that does not exist (a typo) at once, naming it', async () => {
    const p = await producerClass().create({ url });
    try {
      const opts = { _keyy: 'k1' } as unknown as SendOptions;
      const err = await p.message_ping(1, opts).catch((e: Error) => e);
      expect(err).to.be.instanceOf(TypeError);
      expect((err as Error).message)
        .to.contain("'_keyy'")
        .and.contain('_key');
      const viaMessage = await p.message([1], {}, opts).catch((e: Error) => e);
      expect(viaMessage).to.be.instanceOf(TypeError);
      // Sent nothing: a ping sent after them is the first message in q1 (one channel's order is kept).
      await p.message_ping(3);
      const first = await getOne(q1);
      expect(first && JSON.parse(first.content.toString()).content.parameters.n).to.equal(3);
    } finally {
      await p.close();
    }
  });

  describe('RPC', () => {
    let h: Harness;
    beforeEach(() => (h = new Harness()));
    afterEach(async () => h.close());

    class Echo extends MessageProcessor {
      @RpcHandler('command', 'echo')
      echo(content: { parameters: { text: string } }) {
        return content.parameters.text.toUpperCase();
      }
    }

    it('resolves rpc_NAME to the MessageResult of the handler, carrying the answerer fingerprint', async () => {
      await h.start(new Echo({ url, fingerprint: { name: 'echoer' }, eqk: [[ex, [[q1, 'k1']]]] }));
      const p = await producerClass().create({ url });
      h.onClose(() => p.close());
      const r = await p.rpc_echo('hi', { _timeout: 5 });
      expect(r).to.be.instanceOf(MessageResult);
      expect(r.ok).to.equal(true);
      expect(r.body.content.value).to.equal('HI');
      expect(r.body.fingerprint.name).to.equal('echoer');
    });

    it('keeps many calls in flight on one channel and matches each reply to its call', async () => {
      await h.start(new Echo({ url, eqk: [[ex, [[q1, 'k1']]]], prefetch: 50 }));
      const p = await producerClass().create({ url });
      h.onClose(() => p.close());
      const texts = Array.from({ length: 200 }, (_, i) => `t${i}`);
      const results = await Promise.all(texts.map((t) => p.rpc_echo(t, { _timeout: 10 })));
      expect(results.map((r) => r.body.content.value)).to.deep.equal(texts.map((t) => t.toUpperCase()));
    });

    it('retries an unanswered RPC, then resolves to a TimeoutError', async () => {
      let seen = 0;
      await ch.consume(q1, (m) => {
        if (m) {
          seen++;
          ch.ack(m);
        }
      });
      const p = await producerClass().create({ url });
      h.onClose(() => p.close());
      const r = await p.rpc_echo('nobody', { _timeout: 0.2, _max_retry: 2 });
      expect(r).to.be.instanceOf(MessageResultException);
      expect(r.ok).to.equal(false);
      expect(r.body.content.value).to.equal('TimeoutError');
      expect(seen).to.equal(3);
    });

    it('times out each call on its own clock while calls with other timeouts are in flight', async () => {
      const requests = new Map<string, amqp.ConsumeMessage>();
      await ch.consume(q1, (m) => {
        if (!m) return;
        ch.ack(m);
        requests.set(
          (JSON.parse(m.content.toString()) as { content: { parameters: { text: string } } }).content.parameters.text,
          m,
        );
      });
      const p = await producerClass().create({ url });
      h.onClose(() => p.close());
      // The long call first: the short one, sent after it, must still end in its own time.
      const slow = p.rpc_echo('slow', { _timeout: 30, _max_retry: 0 });
      const t0 = performance.now();
      const fast = await p.rpc_echo('fast', { _timeout: 0.2, _max_retry: 1 });
      const took = performance.now() - t0;
      expect(fast.body.content.value).to.equal('TimeoutError');
      expect(took).to.be.within(390, 10_000);
      // The long call is still waiting, and its answer completes it.
      const m = requests.get('slow')!;
      ch.sendToQueue(m.properties.replyTo, Buffer.from(JSON.stringify(new MessageResult('in time').body)), {
        correlationId: m.properties.correlationId,
      });
      expect((await slow).body.content.value).to.equal('in time');
    });

    it('completes the call with a late reply to an earlier attempt', async () => {
      const attempts: amqp.ConsumeMessage[] = [];
      const second = deferred();
      await ch.consume(q1, (m) => {
        if (!m) return;
        ch.ack(m);
        if (attempts.push(m) === 2) second.resolve();
      });
      const p = await producerClass().create({ url });
      h.onClose(() => p.close());
      const call = p.rpc_echo('late', { _timeout: 0.2, _max_retry: 10 });
      // Answer the first attempt only after the producer has given up on it and sent again.
      await within(second.promise, { message: 'a second attempt sent' });
      const [m] = attempts;
      ch.sendToQueue(m.properties.replyTo, Buffer.from(JSON.stringify(new MessageResult('finally').body)), {
        correlationId: m.properties.correlationId,
      });
      const r = await call;
      expect(r.body.content.value).to.equal('finally');
    });

    it('turns a malformed reply into MessageResultError', async () => {
      await ch.consume(q1, (m) => {
        if (!m) return;
        ch.ack(m);
        ch.sendToQueue(m.properties.replyTo, Buffer.from('{"not": "a result"}'), {
          correlationId: m.properties.correlationId,
        });
      });
      const p = await producerClass().create({ url });
      h.onClose(() => p.close());
      const r = await p.rpc_echo('x', { _timeout: 5 });
      expect(r).to.be.instanceOf(MessageResultError);
      expect(r.body.content.message).to.match(/^Malformed reply/);
    });

    it('returns a reply queue with _queue_only, and consumeRpc collects the replies of many components', async () => {
      const fan: ExchangeObject = { name: unique('fan'), type: 'fanout', durable: false, autoDelete: true };
      const mk = (name: string) =>
        new Echo({ url, fingerprint: { name }, eqk: [[fan, [[{ name: '', flags: { exclusive: true } }, '']]]] });
      await h.start(mk('one'), mk('two'));
      class Broadcaster extends GenericProducer {
        static override eks = [[fan, ''] as const];
        build_rpc_echo(text: string) {
          return new RpcCommand('echo', { text });
        }
      }
      const p = await Broadcaster.create({ url });
      h.onClose(() => p.close());
      const queue = await p.rpc_echo('all', { _queue_only: true });
      expect(queue).to.be.a('string');
      const results = await p.consumeRpc(queue, { resultLen: 2, timeout: 5 });
      expect(results.map((r) => r.body.fingerprint.name).sort()).to.deep.equal(['one', 'two']);
      expect(results.every((r) => r.body.content.value === 'ALL')).to.equal(true);
    });

    it('uses the per-call _max_retry, not only the class default', async () => {
      let seen = 0;
      await ch.consume(q1, (m) => {
        if (m) {
          seen++;
          ch.ack(m);
        }
      });
      const Cls = producerClass();
      const p = await Cls.create({ url });
      h.onClose(() => p.close());
      await p.rpc_echo('x', { _timeout: 0.1, _max_retry: 0 });
      expect(seen).to.equal(1);
    });
  });

  it('fails with a clear BrokerError, and no password, for a wrong password', async () => {
    const u = new URL(url);
    u.username = 'guest';
    u.password = 'certainly-wrong-pw';
    let err: unknown;
    try {
      await producerClass().create({ url: u.toString() });
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(BrokerError);
    expect((err as BrokerError).code).to.equal('ACCESS_REFUSED');
    expect((err as Error).message)
      .to.match(/POSTAGE_USER/)
      .and.not.contain('certainly-wrong-pw');
  });
});

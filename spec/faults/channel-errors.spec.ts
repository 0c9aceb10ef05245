/**
 * Faults: the broker closes a channel while the connection lives on.
 * Injected by a publish to an exchange that does not exist (404) and by a
 * run-time redeclare of a queue with other arguments (406), on the shared
 * broker. Must hold: the failing call gets a clear BrokerError, the component
 * opens a new channel by itself, and the next messages flow.
 */
import { expect } from 'chai';
import amqp from 'amqplib';
import {
  BrokerError,
  GenericConsumer,
  GenericProducer,
  MessageHandler,
  MessageProcessor,
  type ExchangeObject,
  type ProducerOptions,
} from '../../lib/index.js';
import { brokerUrl } from '../support/broker.js';
import { capture } from '../support/log.js';
import { Harness, deferred } from '../support/components.js';
import { asOperator, deleteTopology, getOne, unique } from '../support/topology.js';

describe('fault: the broker closes a channel', function () {
  this.timeout(30_000);
  let url: string;
  let ex: ExchangeObject;
  let queue: string;
  let other: string;
  let h: Harness;
  beforeEach(async () => {
    url = await brokerUrl();
    ex = { name: unique('chex'), type: 'direct', durable: false };
    queue = unique('chq');
    other = unique('chq2');
    h = new Harness();
  });
  afterEach(async () => {
    await h.close();
    await deleteTopology([queue, other], [ex.name]);
  });

  /** A producer sending to `ex` with key 'k', where `queue` is bound (declared by an operator's connection). */
  async function producer(options: ProducerOptions = {}) {
    const exchange = ex;
    class P extends GenericProducer {
      static override eks = [[exchange, 'k'] as const];
    }
    await asOperator(async (ch) => {
      await ch.assertExchange(ex.name, 'direct', { durable: false });
      await ch.assertQueue(queue);
      await ch.bindQueue(queue, ex.name, 'k');
    });
    const p = await P.create({ url, ...options });
    h.onClose(() => p.close());
    return p;
  }

  it('a producer whose publish hit a missing exchange reports it, reopens its channel and sends again', async () => {
    const p = await producer();
    const reopened = deferred();
    p.on('connected', () => reopened.resolve());
    let err: unknown;
    await p.message_ping({}, { _eks: [[{ name: unique('missing'), type: 'direct' }, 'k']] }).catch((e) => (err = e));
    expect(err).to.be.instanceOf(BrokerError);
    expect((err as BrokerError).code).to.equal('CHANNEL_CLOSED');
    expect((err as Error).message).to.match(/NOT_FOUND - no exchange/);
    // The broker's reply code, as on every BrokerError a consumer raises for the same refusal.
    expect((err as BrokerError).amqpCode).to.equal(404);
    await reopened.promise;
    await p.message_ping({ n: 2 });
    expect(JSON.parse(((await getOne(queue)) as amqp.GetMessage).content.toString()).content.parameters.n).to.equal(2);
  });

  it('a buffering producer sends what it held while its channel was being reopened', async () => {
    const p = await producer({ whileDisconnected: 'buffer' });
    await p.message_ping({}, { _eks: [[{ name: unique('missing'), type: 'direct' }, 'k']] }).catch(() => undefined);
    // The channel is down now and comes back by itself: this send is held, then sent.
    await p.message_ping({ n: 3 });
    expect(JSON.parse(((await getOne(queue)) as amqp.GetMessage).content.toString()).content.parameters.n).to.equal(3);
  });

  it('a processor whose run-time bind was refused reports it, reopens its channel and keeps consuming', async () => {
    const conn = await amqp.connect(url);
    const ch = await conn.createChannel();
    await ch.assertQueue(other, { arguments: { 'x-max-length': 3 } });
    await conn.close();
    const got: number[] = [];
    let next = deferred();
    class Sink extends MessageProcessor {
      @MessageHandler('command', 'n')
      n(content: { parameters: { n: number } }) {
        got.push(content.parameters.n);
        next.resolve();
      }
    }
    const sink = new Sink({ url, eqk: [[ex, [[queue, 'k']]]] });
    const reopened = deferred();
    sink.on('connected', () => reopened.resolve());
    await h.start(sink);
    const exchange = ex;
    class P extends GenericProducer {
      static override eks = [[exchange, 'k'] as const];
    }
    const p = await P.create({ url });
    h.onClose(() => p.close());
    await p.message_n({ n: 1 });
    await next.promise;

    let err: unknown;
    await sink.consumer.queueBind(ex, other, 'k2').catch((e) => (err = e));
    expect((err as BrokerError).code).to.equal('PRECONDITION_FAILED');
    await reopened.promise;
    next = deferred();
    await p.message_n({ n: 2 });
    await next.promise;
    expect(got).to.deep.equal([1, 2]);
  });

  it('backs off reopening a channel the broker keeps closing, and recovers once it can', async () => {
    // A passive exchange: once it is gone, every restore fails with 404, which closes the channel again.
    const conn = await amqp.connect(url);
    const ch = await conn.createChannel();
    await ch.assertExchange(ex.name, 'direct', { durable: false });
    const passive: ExchangeObject = { ...ex, passive: true };
    const { lines, logger } = capture('warn');
    const c = new GenericConsumer({
      url,
      eqk: [[passive, [[queue, 'k']]]],
      logger,
    });
    h.onClose(() => c.close());
    await c.ready();
    await ch.deleteExchange(ex.name);
    // Close the consumer's channel: a redeclare of its queue with other arguments.
    await c
      .queueBind(passive, { name: queue, flags: { arguments: { 'x-max-length': 1 } } }, 'k')
      .catch(() => undefined);
    const reopens = () => lines.filter((l) => l.includes('channel closed by the broker; reopening it')).length;
    // Without backoff this loop reopened every 50 ms: 30 times in 1.5 s.
    await new Promise((r) => setTimeout(r, 1500));
    expect(reopens()).to.be.within(2, 7);
    const delays = lines
      .filter((l) => l.includes('reopening it'))
      .map((l) => (JSON.parse(l) as { delayMs: number }).delayMs);
    expect(delays).to.deep.equal([...delays].sort((a, b) => a - b));
    // The exchange is back: the next reopen restores the consumer.
    const restored = new Promise<void>((r) => c.on('connected', () => r()));
    await ch.assertExchange(ex.name, 'direct', { durable: false });
    await restored;
    await conn.close();
  });
});

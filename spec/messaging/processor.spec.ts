import { expect } from 'chai';
import amqp from 'amqplib';
import sinon from 'sinon';
import { execFile, spawn } from 'node:child_process';
import {
  AckAndRestart,
  ExitScheduler,
  FilterError,
  GenericProducer,
  Handler,
  MessageCommand,
  MessageFilter,
  MessageHandler,
  MessageHandlerFullBody,
  MessageProcessor,
  MessageResult,
  MessageResultError,
  MessageResultException,
  MessageStatus,
  MicroScheduler,
  RejectMessage,
  RpcCommand,
  RpcHandler,
  sleep,
  STOP,
  type ExchangeObject,
  type MessageBody,
} from '../../lib/index.js';
import { makeLogger, rootLogger, setRootLogger } from '../../lib/log.js';
import { brokerUrl, queueCounts } from '../support/broker.js';
import { ENVELOPE_KEYS } from '../support/envelopes.js';
import { capture } from '../support/log.js';
import { until } from '../support/wait.js';
import { Harness, counter, deferred } from '../support/components.js';
import { deleteTopology, getOne, publishRaw, settledQueue, unique } from '../support/topology.js';

type Params = { parameters: Record<string, unknown> };

describe('MessageProcessor', () => {
  let url: string;
  let ex: ExchangeObject;
  let dlx: ExchangeObject;
  let queue: string;
  let dlq: string;
  let h: Harness;
  let raw: amqp.ChannelModel;

  before(async () => {
    url = await brokerUrl();
    raw = await amqp.connect(url);
  });
  after(async () => raw.close());

  beforeEach(async () => {
    ex = { name: unique('ex'), type: 'direct', durable: false };
    dlx = { name: unique('dlx'), type: 'fanout', durable: false };
    queue = unique('q');
    dlq = unique('dlq');
    const ch = await raw.createChannel();
    await ch.assertExchange(dlx.name, 'fanout', { durable: false });
    await ch.assertQueue(dlq);
    await ch.bindQueue(dlq, dlx.name, '');
    await ch.close();
    h = new Harness();
  });
  afterEach(async () => {
    await h.close();
    await deleteTopology([queue, dlq], [ex.name, dlx.name]);
  });

  /** The eqk every spec uses: one queue that dead-letters to `dlq`. */
  const eqk = () =>
    [[ex, [[{ name: queue, flags: { arguments: { 'x-dead-letter-exchange': dlx.name } } }, 'k']]]] as const;

  async function producer() {
    const exchange = ex;
    class Sender extends GenericProducer {
      static override eks = [[exchange, 'k'] as const];
    }
    const p = await Sender.create({ url, fingerprint: { name: 'sender' } });
    h.onClose(() => p.close());
    return p;
  }

  async function queueDepth(): Promise<number> {
    const ch = await raw.createChannel();
    const ok = await ch.checkQueue(queue);
    await ch.close();
    return ok.messageCount;
  }

  describe('handlers', () => {
    it('hands body.content to @MessageHandler and the whole body to @MessageHandlerFullBody, with this bound', async () => {
      const got = counter(2);
      const seen: unknown[] = [];
      class P extends MessageProcessor {
        tag = 'me';
        @MessageHandler('command', 'store')
        store(content: Params) {
          seen.push(['content', this.tag, content]);
          got.hit();
        }
        @MessageHandlerFullBody('status', 'alive')
        alive(body: MessageBody) {
          seen.push(['body', this.tag, body.type, body.name, body.fingerprint.name]);
          got.hit();
        }
      }
      await h.start(new P({ url, eqk: eqk() }));
      const p = await producer();
      await p.message_store({ a: 1 });
      await p.forward(new MessageStatus('alive').setFingerprint({ name: 'sender' }).body);
      await got.done;
      expect(seen).to.deep.equal([
        ['content', 'me', { parameters: { a: 1 } }],
        ['body', 'me', 'status', 'alive', 'sender'],
      ]);
    });

    it('runs every handler of a (type, name) in declaration order, inherited ones first, each with its own copy', async () => {
      const got = counter(3);
      const order: string[] = [];
      class Base extends MessageProcessor {
        @MessageHandler('command', 'go')
        base(content: Params) {
          order.push(`base:${JSON.stringify(content.parameters)}`);
          content.parameters.mutated = true;
          got.hit();
        }
      }
      class Derived extends Base {
        @MessageHandler('command', 'go')
        first(content: Params) {
          order.push(`first:${JSON.stringify(content.parameters)}`);
          content.parameters.mutated = true;
          got.hit();
        }
        @MessageHandler('command', 'go')
        second(content: Params) {
          order.push(`second:${JSON.stringify(content.parameters)}`);
          got.hit();
        }
      }
      await h.start(new Derived({ url, eqk: eqk() }));
      await (await producer()).message_go({ x: 1 });
      await got.done;
      expect(order).to.deep.equal(['base:{"x":1}', 'first:{"x":1}', 'second:{"x":1}']);
    });

    it('runs async and generator handlers to the end before acking', async () => {
      const done = counter(2);
      const log: string[] = [];
      class P extends MessageProcessor {
        @MessageHandler('command', 'work')
        async asyncWork() {
          await sleep(5);
          log.push('async');
          done.hit();
        }
        @MessageHandler('command', 'work')
        *genWork() {
          yield sleep(5);
          log.push('generator');
          done.hit();
        }
      }
      await h.start(new P({ url, eqk: eqk() }));
      await (await producer()).message_work();
      await done.done;
      expect(log).to.deep.equal(['async', 'generator']);
    });

    it('builds a Handler class per delivery with data, processor and reply', async () => {
      const got = deferred<unknown[]>();
      class P extends MessageProcessor {
        @MessageHandler('command', 'audit')
        static Audit = class extends Handler<P, Params> {
          call() {
            got.resolve([this.data, this.processor instanceof P, typeof this.reply]);
          }
        };
      }
      await h.start(new P({ url, eqk: eqk() }));
      await (await producer()).message_audit({ who: 'x' });
      expect(await got.promise).to.deep.equal([{ parameters: { who: 'x' } }, true, 'function']);
    });

    it('passes what its handler gets through @MessageFilter (content, or the full body), and a FilterError skips only that handler', async () => {
      const got = counter(3);
      const seen: string[] = [];
      const upper = (content: Params, field: string): Params => ({
        parameters: { ...content.parameters, [field]: String(content.parameters[field]).toUpperCase() },
      });
      const dropAll = (): never => {
        throw new FilterError();
      };
      const stamp = (body: MessageBody<Params>): MessageBody<Params> => ({ ...body, name: `${body.name}!` });
      class P extends MessageProcessor {
        @MessageFilter(upper, 'text')
        @MessageHandler('command', 'say')
        shout(content: Params) {
          seen.push(`shout:${content.parameters.text}`);
          got.hit();
        }
        @MessageFilter(dropAll)
        @MessageHandler('command', 'say')
        never() {
          seen.push('never');
        }
        @MessageFilter(stamp)
        @MessageHandlerFullBody('command', 'say')
        whole(body: MessageBody<Params>) {
          seen.push(`whole:${body.name}:${body.content.parameters.text}`);
          got.hit();
        }
        @MessageHandler('command', 'say')
        plain(content: Params) {
          seen.push(`plain:${content.parameters.text}`);
          got.hit();
        }
      }
      await h.start(new P({ url, eqk: eqk() }));
      await (await producer()).message_say({ text: 'hi' });
      await got.done;
      expect(seen).to.deep.equal(['shout:HI', 'whole:say!:hi', 'plain:hi']);
    });

    it("gives each filter its handler's own copy: a filter that mutates its argument changes nothing for the next handler", async () => {
      const got = counter(2);
      const seen: unknown[] = [];
      const vandal = (content: Params): Params => {
        content.parameters.text = 'vandalised';
        delete content.parameters.keep;
        return content;
      };
      class P extends MessageProcessor {
        @MessageFilter(vandal)
        @MessageHandler('command', 'say')
        first(content: Params) {
          seen.push(content.parameters);
          got.hit();
        }
        @MessageHandler('command', 'say')
        second(content: Params) {
          seen.push(content.parameters);
          got.hit();
        }
      }
      await h.start(new P({ url, eqk: eqk() }));
      await (await producer()).message_say({ text: 'hi', keep: 1 });
      await got.done;
      expect(seen).to.deep.equal([{ text: 'vandalised' }, { text: 'hi', keep: 1 }]);
    });

    it('refuses a handler decorator on a field, in either decorator flavour, with an error that says where it goes', () => {
      expect(() => {
        class P extends MessageProcessor {
          @MessageHandler('command', 'x')
          notAMethod = 1;
        }
        return new P({ eqk: [] });
      }).to.throw(TypeError, /field 'notAMethod'.*Move the decorator to a method/);
      // experimentalDecorators calls (prototype, key) for a field: no descriptor, nothing there.
      class Q extends MessageProcessor {}
      expect(() => MessageHandler('command', 'x')(Q.prototype, 'missing')).to.throw(TypeError, /field 'missing'/);
      expect(() => MessageHandler('command', 'x')(Q, 'notAHandler')).to.throw(TypeError, /static member 'notAHandler'/);
    });

    it('registers handlers without decorators, by calling a decorator with (prototype, method name)', async () => {
      const said = deferred<unknown>();
      class P extends MessageProcessor {
        say(content: Params) {
          said.resolve(content.parameters.text);
        }
      }
      MessageHandler('command', 'say')(P.prototype, 'say');
      await h.start(new P({ url, eqk: eqk() }));
      await (await producer()).message_say({ text: 'plain js' });
      expect(await said.promise).to.equal('plain js');
    });
  });

  describe('delivery outcomes', () => {
    it('acks a message once its handlers ran, even with no handler', async () => {
      const got = deferred();
      class P extends MessageProcessor {
        @MessageHandler('command', 'known')
        known() {
          got.resolve();
        }
      }
      await h.start(new P({ url, eqk: eqk() }));
      const p = await producer();
      await p.message_unknown();
      await p.message_known();
      await got.promise;
      // Both acked: nothing ready or unacked, and nothing dead-lettered (a reject reaches the DLQ before the
      // broker counts the source settled).
      expect(await settledQueue(queue)).to.deep.equal({ consumers: 1, ready: 0, unacked: 0 });
      expect(await queueCounts(dlq)).to.include({ ready: 0 });
    });

    it('dead-letters a message whose handler throws RejectMessage', async () => {
      class P extends MessageProcessor {
        @MessageHandler('command', 'bad')
        bad() {
          throw new RejectMessage();
        }
      }
      await h.start(new P({ url, eqk: eqk() }));
      await (await producer()).message_bad({ n: 1 });
      const dead = await getOne(dlq);
      expect(dead).to.not.equal(false);
      expect(JSON.parse((dead as amqp.GetMessage).content.toString()).name).to.equal('bad');
    });

    it('logs and dead-letters a message whose handler crashes, and keeps serving', async () => {
      const next = deferred();
      class P extends MessageProcessor {
        @MessageHandler('command', 'crash')
        crash() {
          throw new TypeError('handler bug');
        }
        @MessageHandler('command', 'fine')
        fine() {
          next.resolve();
        }
      }
      await h.start(new P({ url, eqk: eqk() }));
      const p = await producer();
      await p.message_crash();
      await p.message_fine();
      await next.promise;
      expect(JSON.parse(((await getOne(dlq)) as amqp.GetMessage).content.toString()).name).to.equal('crash');
    });

    it('acks, then stops the scheduler, on ExitScheduler', async () => {
      class P extends MessageProcessor {
        @MessageHandler('command', 'bye')
        bye() {
          throw new ExitScheduler();
        }
      }
      const proc = new P({ url, eqk: eqk() });
      await proc.ready();
      const s = new MicroScheduler();
      s.addMicrothread(proc);
      const running = s.run();
      await (await producer()).message_bye();
      await running;
      await proc.close();
      // Closed: anything it held unacked is back in the queue, so its depth is the whole count.
      expect(await queueDepth()).to.equal(0);
      expect(await queueCounts(dlq)).to.include({ ready: 0 });
    });

    it("has the broker's word for the ack of a ('command', 'quit') before run() resolves, so a process exiting right after does not get the quit again", async () => {
      const q = unique('quitter');
      const ch = await raw.createChannel();
      await ch.assertQueue(q);
      try {
        for (let round = 0; round < 3; round++) {
          const child = spawn(process.execPath, ['--import', 'tsx', 'spec/fixtures/quit-then-exit.ts', q], {
            env: { ...process.env, POSTAGE_URL: url },
          });
          await new Promise<void>((resolve) =>
            child.stdout.on('data', (c: Buffer) => String(c).includes('ready') && resolve()),
          );
          const exited = new Promise((r) => child.on('exit', r));
          await publishRaw('', q, Buffer.from(JSON.stringify(new MessageCommand('quit').body)));
          await exited;
          // The broker requeues what a vanished consumer left unacked in the same step that drops the consumer:
          // once it counts no consumer, its count of ready messages includes anything that came back.
          const gone = await until(
            async () => {
              const ok = await ch.checkQueue(q);
              return ok.consumerCount === 0 && ok;
            },
            { timeout: 10_000, message: `round ${round + 1}: the broker dropping the exited process's consumer` },
          );
          expect(gone.messageCount, `round ${round + 1}: the quit came back`).to.equal(0);
        }
      } finally {
        await ch.deleteQueue(q);
        await ch.close();
      }
    });

    it("stops the scheduler on the built-in ('command', 'quit')", async () => {
      const proc = new MessageProcessor({ url, eqk: eqk() });
      await proc.ready();
      const s = new MicroScheduler();
      s.addMicrothread(proc);
      const running = s.run();
      await (await producer()).message_quit();
      await running;
      await proc.close();
      expect(await queueDepth()).to.equal(0);
    });

    it("acks, then calls restart(), on AckAndRestart and on the built-in ('command', 'restart')", async () => {
      const restarts = counter(2);
      class P extends MessageProcessor {
        @MessageHandler('command', 'again')
        again() {
          throw new AckAndRestart();
        }
        override restart() {
          restarts.hit();
        }
      }
      await h.start(new P({ url, eqk: eqk() }));
      const p = await producer();
      await p.message_again();
      await p.message_restart();
      await restarts.done;
      // restart() ran for both, and both were acked first: none held, none dead-lettered.
      expect(await settledQueue(queue)).to.deep.equal({ consumers: 1, ready: 0, unacked: 0 });
      expect(await queueCounts(dlq)).to.include({ ready: 0 });
    });
  });

  describe('RPC', () => {
    it('replies with a returned value as MessageResult, or with what reply() was given', async () => {
      class P extends MessageProcessor {
        @RpcHandler('command', 'add')
        add(content: { parameters: { a: number; b: number } }) {
          return content.parameters.a + content.parameters.b;
        }
        @RpcHandler('command', 'explicit')
        explicit(_c: Params, reply: (r: unknown) => void) {
          reply(new MessageResult('RPC message received', 'ok'));
        }
      }
      await h.start(new P({ url, eqk: eqk() }));
      const p = await producer();
      const sum = await p.rpc_add({ a: 2, b: 3 }, { _timeout: 5 });
      expect(sum.body.content).to.deep.equal({ type: 'success', value: 5, message: '' });
      const ex2 = await p.rpc_explicit({}, { _timeout: 5 });
      expect(ex2.body.content).to.deep.equal({ type: 'success', value: 'RPC message received', message: 'ok' });
    });

    it('replies MessageResultException(name, message) when the handler throws', async () => {
      class P extends MessageProcessor {
        @RpcHandler('command', 'fail')
        async fail(): Promise<never> {
          throw new RangeError('out of range');
        }
      }
      await h.start(new P({ url, eqk: eqk() }));
      const r = await (await producer()).rpc_fail({}, { _timeout: 5 });
      expect(r).to.be.instanceOf(MessageResultException);
      expect(r.body.content).to.deep.equal({ type: 'exception', value: 'RangeError', message: 'out of range' });
    });

    for (const [what, value] of [
      ['a BigInt', () => 10n],
      [
        'a circular object',
        () => {
          const o: Record<string, unknown> = {};
          o.self = o;
          return o;
        },
      ],
    ] as const) {
      it(`treats an RPC result that cannot be encoded (${what}) as a failed handler: the caller gets MessageResultException, the message is rejected, the processor goes on`, async () => {
        let calls = 0;
        class P extends MessageProcessor {
          @RpcHandler('command', 'bad')
          bad() {
            calls++;
            return value();
          }
          @RpcHandler('command', 'good')
          good() {
            return 'fine';
          }
        }
        await h.start(new P({ url, eqk: eqk() }));
        const p = await producer();
        const r = await p.rpc_bad({}, { _timeout: 5, _max_retry: 0 });
        expect(r).to.be.instanceOf(MessageResultException);
        expect(r.body.content.value).to.equal('TypeError');
        expect(r.body.content.message).to.match(/BigInt|circular/i);
        // Settled as a failure: dead-lettered, never redelivered to crash the next replica.
        const dead = (await getOne(dlq)) as amqp.GetMessage;
        expect(JSON.parse(dead.content.toString()).name).to.equal('bad');
        expect(calls).to.equal(1);
        expect((await p.rpc_good({}, { _timeout: 5 })).body.content.value).to.equal('fine');
      });
    }

    it('answers an RPC with exactly one handler: the last declared, a subclass counting after its base', async () => {
      const ran: string[] = [];
      class Base extends MessageProcessor {
        @RpcHandler('command', 'who')
        first() {
          ran.push('base.first');
          return 'base.first';
        }
        @RpcHandler('command', 'who')
        second() {
          ran.push('base.second');
          return 'base.second';
        }
      }
      class Sub extends Base {
        @RpcHandler('command', 'who')
        mine() {
          ran.push('sub.mine');
          return 'sub.mine';
        }
      }
      await h.start(new Sub({ url, eqk: eqk() }));
      const p = await producer();
      const r = await p.rpc_who({}, { _timeout: 5 });
      expect(r.body.content.value).to.equal('sub.mine');
      expect(ran).to.deep.equal(['sub.mine']);
    });

    it('answers an RPC nobody handles with MessageResultError at once', async () => {
      await h.start(new MessageProcessor({ url, fingerprint: { name: 'lonely' }, eqk: eqk() }));
      const started = Date.now();
      const r = await (await producer()).rpc_nobody({}, { _timeout: 20, _max_retry: 0 });
      expect(r).to.be.instanceOf(MessageResultError);
      expect(r.body.content.message).to.match(/No handler for RPC 'nobody'/);
      expect(Date.now() - started).to.be.lessThan(5000);
    });
  });

  describe('poison input', () => {
    const poison: Array<[string, Buffer]> = [
      ['a body that is not JSON', Buffer.from('\u0000not json at all')],
      ['JSON that is not an envelope', Buffer.from('[1, 2, 3]')],
      [
        'an envelope of an unknown version',
        Buffer.from(JSON.stringify({ ...new MessageCommand('x').body, version: '1' })),
      ],
    ];
    let logs: string[];
    let before: ReturnType<typeof rootLogger>;
    beforeEach(() => {
      logs = [];
      before = rootLogger();
      setRootLogger(makeLogger('warn', { write: (l: string) => void logs.push(l) }));
    });
    afterEach(() => setRootLogger(before));

    for (const [what, content] of poison) {
      it(`rejects ${what} to the dead-letter queue and keeps serving`, async () => {
        const next = deferred();
        class P extends MessageProcessor {
          @MessageHandler('command', 'fine')
          fine() {
            next.resolve();
          }
        }
        await h.start(new P({ url, eqk: eqk() }));
        await publishRaw(ex.name, 'k', content);
        await (await producer()).message_fine();
        await next.promise;
        const line = logs.find((l) => l.includes('malformed message rejected'));
        expect(line, 'a log line naming the rejection').to.be.a('string');
        expect(JSON.parse(line!).reason).to.be.a('string').and.not.empty;
        const dead = (await getOne(dlq)) as amqp.GetMessage;
        expect(dead).to.not.equal(false);
        expect(dead.content.equals(content)).to.equal(true);
      });
    }
  });

  describe('lifecycle', () => {
    it('after ready(), keeps what is published even before the scheduler runs', async () => {
      const got = deferred<unknown>();
      class P extends MessageProcessor {
        @MessageHandler('command', 'early')
        early(content: Params) {
          got.resolve(content.parameters);
        }
      }
      const proc = new P({ url, eqk: eqk() });
      await proc.ready();
      await (await producer()).message_early({ n: 1 });
      await h.start(proc);
      expect(await got.promise).to.deep.equal({ n: 1 });
    });

    it('runs create() once and an overridden step() around every delivery, as any MicroThread, and STOP from it ends the processor', async () => {
      const handled: number[] = [];
      const steps: string[] = [];
      let creates = 0;
      const stopped = deferred();
      class P extends MessageProcessor {
        override create(): void {
          creates++;
        }
        override *step() {
          steps.push('before');
          const r = yield* super.step();
          steps.push('after');
          if (handled.length === 2) {
            stopped.resolve();
            return STOP;
          }
          return r;
        }
        @MessageHandler('command', 'count')
        count(content: Params) {
          handled.push(content.parameters.n as number);
        }
      }
      const proc = new P({ url, eqk: eqk() });
      await proc.ready();
      const sender = await producer();
      await sender.message_count({ n: 1 });
      await sender.message_count({ n: 2 });
      await h.start(proc);
      await stopped.promise;
      expect(creates).to.equal(1);
      expect(handled).to.deep.equal([1, 2]);
      // The first step waits for ready() and handles the first delivery; each step is one delivery.
      expect(steps).to.deep.equal(['before', 'after', 'before', 'after']);
      // STOP ended the thread, and its channel closed with it.
      expect(h.scheduler.size).to.equal(0);
      await proc.close();
      expect(() => proc.consumer.channel).to.throw(/no channel/);
    });

    it('calls step() through a spy set on MessageProcessor.prototype, once per delivery', async () => {
      const spy = sinon.spy(MessageProcessor.prototype, 'step');
      try {
        const done = counter(3);
        class P extends MessageProcessor {
          @MessageHandler('command', 'count')
          count() {
            done.hit();
          }
        }
        const proc = new P({ url, eqk: eqk() });
        await proc.ready();
        const sender = await producer();
        for (let n = 0; n < 3; n++) await sender.message_count({ n });
        await h.start(proc);
        await done.done;
        // The first step waits for ready() and takes the first delivery; one step per delivery after that.
        expect(spy.callCount).to.be.at.least(3);
        expect(spy.thisValues.every((t) => t === proc)).to.equal(true);
      } finally {
        spy.restore();
      }
    });

    it('close() ends a wait between two retries at once, and the message goes back to its queue', async () => {
      const failed = deferred();
      class P extends MessageProcessor {
        @MessageHandler('command', 'flaky')
        flaky() {
          failed.resolve();
          throw new Error('not yet');
        }
      }
      const proc = new P({ url, eqk: eqk(), retry: { attempts: 3, backoffMs: 60_000 }, logger: makeLogger('silent') });
      await h.start(proc);
      await (await producer()).message_flaky();
      await failed.promise;
      const started = Date.now();
      await proc.close();
      expect(Date.now() - started).to.be.below(2000);
      expect(await queueDepth()).to.equal(1);
    });

    it('closes its processor, producer and scheduler at the end of an await using scope', async () => {
      let proc: MessageProcessor;
      let prod: GenericProducer;
      {
        await using scheduler = new MicroScheduler();
        await using p = new MessageProcessor({ url, eqk: eqk() });
        await using sender = await GenericProducer.create({ url });
        await p.ready();
        scheduler.addMicrothread(p);
        void scheduler.run();
        [proc, prod] = [p, sender];
      }
      expect(() => proc.consumer.channel).to.throw(/no channel/);
      expect(prod.connection).to.equal(undefined);
    });

    it('close() lets the handler in flight finish and ack before closing', async () => {
      const gate = deferred();
      const entered = deferred();
      let finished = false;
      class P extends MessageProcessor {
        @MessageHandler('command', 'slow')
        async slow() {
          entered.resolve();
          await gate.promise;
          finished = true;
        }
      }
      const proc = new P({ url, eqk: eqk() });
      await h.start(proc);
      await (await producer()).message_slow();
      await entered.promise;
      const closing = proc.close();
      gate.resolve();
      await closing;
      expect(finished).to.equal(true);
      // Acked, not rejected: closed, nothing held, and nothing dead-lettered.
      expect(await queueDepth()).to.equal(0);
      expect(await queueCounts(dlq)).to.include({ ready: 0 });
    });

    it("tells its options form from a fingerprint without guessing: a lone object with a fingerprint's own fields is a fingerprint, any other lone object is options", async () => {
      const proc = new MessageProcessor({ url, prefetch: 3 });
      expect(proc.consumer.prefetch).to.equal(3);
      expect(proc.fingerprint.name).to.equal('MessageProcessor');
      const positional = new MessageProcessor({ name: 'fp-only', vhost: '/' });
      expect(positional.fingerprint.name).to.equal('fp-only');
      // { vhost } alone is an option: the connection and the fingerprint agree on it.
      const elsewhere = new MessageProcessor({ vhost: 'spec-no-such-vhost', handleSignals: false });
      expect(elsewhere.fingerprint.vhost).to.equal('spec-no-such-vhost');
      const err = await elsewhere.ready().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((err as { code?: string }).code).to.equal('VHOST_REFUSED');
      expect((err as Error).message).to.contain("'spec-no-such-vhost'");
    });

    it('refuses one object that mixes fingerprint fields with options, saying how to write it', () => {
      expect(() => new MessageProcessor({ name: 'x', eqk: [] } as never)).to.throw(
        TypeError,
        /\{ fingerprint: \{ name \}, eqk \}/,
      );
    });

    it('honours logger and connectionName, as a producer does', async () => {
      const { lines, logger } = capture('debug');
      const name = unique('named');
      class Visible extends MessageProcessor {
        get logger() {
          return this.log;
        }
      }
      const proc = new Visible({ url, logger, connectionName: `${name}-processor`, eqk: eqk() });
      expect(proc.logger).to.equal(logger);
      await h.start(proc);
      const prod = await GenericProducer.create({ url, logger, connectionName: `${name}-producer` });
      h.onClose(() => prod.close());
      expect(lines.join('\n')).to.contain('queue bound').and.contain('connected');
      const props = await new Promise<string>((resolve, reject) =>
        execFile(
          'rabbitmqctl',
          ['list_connections', '-q', '-p', decodeURIComponent(new URL(url).pathname.slice(1)), 'client_properties'],
          (e, out) => (e ? reject(e) : resolve(out)),
        ),
      );
      expect(props).to.contain(`${name}-processor`).and.contain(`${name}-producer`);
    });

    it('takes the Postage positional constructor (fingerprint, eqk, hup, vhost)', async () => {
      const got = deferred<string>();
      class P extends MessageProcessor {
        @MessageHandler('command', 'hello')
        hello() {
          got.resolve(this.fingerprint.name);
        }
      }
      const u = new URL(url);
      const vhost = decodeURIComponent(u.pathname.slice(1)) || '/';
      await h.start(
        new P(
          { name: 'positional', type: 'test' },
          eqk(),
          {
            host: u.hostname,
            user: decodeURIComponent(u.username) || 'guest',
            password: decodeURIComponent(u.password) || 'guest',
            port: Number(u.port) || 5672,
          },
          vhost,
        ),
      );
      await (await producer()).message_hello();
      expect(await got.promise).to.equal('positional');
    });
  });

  describe('wire compatibility with Python Postage', () => {
    it('handles a body exactly as Python Postage builds it', async () => {
      const got = deferred<unknown>();
      class P extends MessageProcessor {
        @MessageHandler('command', 'echo')
        echo(content: Params) {
          got.resolve(content);
        }
      }
      await h.start(new P({ url, eqk: eqk() }));
      // json.dumps(MessageCommand('echo', {'text': 'hi'}).body) after fingerprint(**Fingerprint(...).as_dict()), Python
      // 3.
      const python =
        '{"type": "command", "name": "echo", "category": "message", "version": "2", "fingerprint": {"name": ' +
        '"echo_send", "type": "controller", "pid": "4242", "host": "pyhost", "user": "py", "vhost": "/"}, ' +
        '"content": {"parameters": {"text": "hi"}}, "_reserved": {}}';
      await publishRaw(ex.name, 'k', Buffer.from(python), { contentType: 'application/json' });
      expect(await got.promise).to.deep.equal({ parameters: { text: 'hi' } });
    });

    it('answers a Python-style RPC (reply_to queue, no correlation id) with a Postage result body', async () => {
      class P extends MessageProcessor {
        @RpcHandler('command', 'echo')
        echo() {
          return 'RPC message received';
        }
      }
      await h.start(new P({ url, eqk: eqk() }));
      const ch = await raw.createChannel();
      const { queue: replyQ } = await ch.assertQueue('', { exclusive: true, autoDelete: true });
      await publishRaw(ex.name, 'k', Buffer.from(JSON.stringify(new RpcCommand('echo', {}).body)), { replyTo: replyQ });
      const reply = await getOneOn(ch, replyQ);
      await ch.close();
      expect(Object.keys(reply)).to.deep.equal(ENVELOPE_KEYS);
      expect(reply.content).to.deep.equal({ type: 'success', value: 'RPC message received', message: '' });
    });
  });
});

async function getOneOn(ch: amqp.Channel, queue: string): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    void ch.consume(queue, (m) => m && resolve(JSON.parse(m.content.toString())), { noAck: true });
  });
}

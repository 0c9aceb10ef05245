/**
 * What a delivery that completes within the call must keep, beside the ways
 * that wait: middleware that calls next() twice or not at all around a plain
 * handler, per-key order with plain and async handlers mixed, RPC answers of
 * bare values from processors of different fingerprints and encoders in one
 * process, and a reply whose reply_to queue is gone.
 */
import { expect } from 'chai';
import amqp from 'amqplib';
import {
  EncryptedJsonEncoder,
  GenericProducer,
  type ExchangeObject,
  MessageHandler,
  MessageProcessor,
  RpcHandler,
} from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { brokerUrl } from '../support/broker.js';
import { deferred, exchangeFixture } from '../support/components.js';
import { envelope } from '../support/envelopes.js';
import { deleteTopology, settledQueue, unique } from '../support/topology.js';
import { until } from '../support/wait.js';

const quiet = makeLogger('silent');
type Rpc = (x: unknown, o?: unknown) => Promise<{ ok: boolean; body: { content: unknown; fingerprint: unknown } }>;
type Send = (x: unknown, o?: unknown) => Promise<void>;

describe('A delivery that completes within the call (plain handlers)', function () {
  this.timeout(30_000);
  const f = exchangeFixture('fastpath', brokerUrl, unique, deleteTopology);

  it('runs a plain handler once behind a middleware that calls next() twice, and not at all behind one that skips', async () => {
    let runs = 0;
    class Plain extends MessageProcessor {
      @MessageHandler('command', 'job')
      job() {
        runs++;
      }
      @RpcHandler('command', 'ask')
      ask(c: { parameters: { skip?: boolean } }) {
        runs++;
        return c.parameters.skip ? 'ran' : 'once';
      }
    }
    const proc = new Plain({ url: f.url, logger: quiet, eqk: [[f.ex, [[f.queue, 'k']]]] });
    let twice = 0;
    proc.use(async (ctx, next) => {
      if ((ctx.message.content as { parameters: { skip?: boolean } }).parameters.skip) return;
      await next();
      await next().catch(() => twice++);
    });
    const outcomes: string[] = [];
    proc.observe((e) => outcomes.push(e.outcome));
    await f.h.start(proc);
    const p = (await f.producer()) as unknown as Record<string, Rpc & Send>;
    await p.message_job({});
    const r = await p.rpc_ask({}, { _timeout: 5, _max_retry: 0 });
    const skipped = await p.rpc_ask({ skip: true }, { _timeout: 5, _max_retry: 0 });
    await p.message_job({ skip: true });
    await until(() => outcomes.length === 4, { timeout: 10_000, message: () => `4 settled (${outcomes})` });
    expect({ runs, twice, outcomes }).to.deep.equal({
      runs: 2,
      twice: 2,
      outcomes: ['acked', 'acked', 'acked', 'acked'],
    });
    expect(r.body.content).to.deep.equal({ type: 'success', value: 'once', message: '' });
    expect(skipped.body.content).to.deep.equal({ type: 'success', value: null, message: '' });
  });

  it("gives a retry the content as it came, whatever a plain handler's failed run did to its own", async () => {
    const seen: unknown[] = [];
    class Mutates extends MessageProcessor {
      @MessageHandler('command', 'job')
      job(c: { parameters: { n: number; list: number[] } }) {
        seen.push(structuredClone(c.parameters));
        c.parameters.n++;
        c.parameters.list.push(99);
        if (seen.length < 3) throw new Error('fails twice');
      }
    }
    const proc = new Mutates({
      url: f.url,
      logger: quiet,
      retry: { attempts: 3, backoffMs: 1 },
      eqk: [[f.ex, [[f.queue, 'k']]]],
    });
    const outcomes: string[] = [];
    proc.observe((e) => outcomes.push(e.outcome));
    await f.h.start(proc);
    await ((await f.producer()) as unknown as Record<string, Send>).message_job({ n: 1, list: [1] });
    await until(() => outcomes.length === 1, { timeout: 10_000, message: 'settled' });
    expect(outcomes).to.deep.equal(['acked']);
    expect(seen).to.deep.equal([1, 2, 3].map(() => ({ n: 1, list: [1] })));
  });

  it('keeps each key in order with plain and async handlers mixed (concurrency 4, orderBy)', async () => {
    const N = 200;
    const seen = new Map<string, number[]>();
    const sent = new Map<string, number[]>();
    const busy = new Set<string>();
    let overlap = false;
    let handled = 0;
    const done = deferred();
    const record = (key: string, n: number) => {
      (seen.get(key) ?? seen.set(key, []).get(key)!).push(n);
      if (++handled === N) done.resolve();
    };
    class Mixed extends MessageProcessor {
      @MessageHandler('command', 'job')
      job(c: { parameters: { key: string; n: number } }) {
        const { key, n } = c.parameters;
        if (busy.has(key)) overlap = true;
        // Every third one waits: the rest end within the call.
        if (n % 3 !== 0) return record(key, n);
        busy.add(key);
        return new Promise<void>((r) => setTimeout(r, 2)).then(() => {
          busy.delete(key);
          record(key, n);
        });
      }
    }
    await f.h.start(
      new Mixed({
        url: f.url,
        logger: quiet,
        concurrency: 4,
        orderBy: (c) => (c as { parameters: { key: string } }).parameters.key,
        eqk: [[f.ex, [[f.queue, 'k']]]],
      }),
    );
    const p = (await f.producer()) as unknown as Record<string, Send>;
    for (let n = 0; n < N; n += 20)
      await Promise.all(
        Array.from({ length: 20 }, (_, i) => {
          const key = `key-${(n + i) % 5}`;
          (sent.get(key) ?? sent.set(key, []).get(key)!).push(n + i);
          return p.message_job({ key, n: n + i });
        }),
      );
    await done.promise;
    expect(overlap, 'two deliveries of one key at once').to.equal(false);
    for (const [key, ns] of sent) expect(seen.get(key), key).to.deep.equal(ns);
  });

  it('answers bare values with each processor its own fingerprint and encoder, in one process', async () => {
    const k1 = Buffer.alloc(32, 7).toString('base64');
    const ex2: ExchangeObject = { name: unique('fastpath-ex2'), type: 'direct', durable: false };
    const q2 = unique('fastpath-q2');
    f.h.onClose(() => deleteTopology([q2], [ex2.name]));
    class Answers extends MessageProcessor {
      @RpcHandler('command', 'ask')
      ask(c: { parameters: { v: unknown } }) {
        return c.parameters.v;
      }
    }
    await f.h.start(
      new Answers({ url: f.url, logger: quiet, fingerprint: { name: 'plain-one' }, eqk: [[f.ex, [[f.queue, 'k']]]] }),
    );
    await f.h.start(
      new Answers({
        url: f.url,
        logger: quiet,
        fingerprint: { name: 'sealed-two' },
        encoder: new EncryptedJsonEncoder({ keys: { k1 } }),
        eqk: [[ex2, [[q2, 'k']]]],
      }),
    );
    const plain = (await f.producer()) as unknown as Record<string, Rpc>;
    class Sealed extends GenericProducer {
      static override eks = [[ex2, 'k'] as const];
    }
    const sealed = (await Sealed.create({
      url: f.url,
      encoder: new EncryptedJsonEncoder({ keys: { k1 } }),
    })) as unknown as Record<string, Rpc> & { close(): Promise<void> };
    f.h.onClose(() => sealed.close());
    const values = [1, 'text', { a: [1, 2] }, null, '\u0000mark', { toJSON: () => 'json' }, [undefined]];
    for (const v of values) {
      const want = JSON.parse(JSON.stringify({ v })).v ?? null;
      for (const [who, p] of [
        ['plain-one', plain],
        ['sealed-two', sealed],
      ] as const) {
        const r = await p.rpc_ask({ v }, { _timeout: 5, _max_retry: 0 });
        expect(r.body.content, `${who} answering ${JSON.stringify(v)}`).to.deep.equal({
          type: 'success',
          value: want,
          message: '',
        });
        expect((r.body.fingerprint as { name: string }).name).to.equal(who);
      }
    }
  });

  it('goes on answering after a reply whose reply_to queue is gone', async () => {
    let asked = 0;
    class Answers extends MessageProcessor {
      @RpcHandler('command', 'ask')
      ask() {
        return ++asked;
      }
    }
    await f.h.start(new Answers({ url: f.url, logger: quiet, eqk: [[f.ex, [[f.queue, 'k']]]] }));
    const conn = await amqp.connect(f.url);
    f.h.onClose(() => conn.close());
    const ch = await conn.createConfirmChannel();
    const body = envelope({ category: 'rpc', name: 'ask', fingerprint: { name: 'gone' } });
    for (const replyTo of [unique('no-such-queue'), 'amq.rabbitmq.reply-to.g1hkABGNvbmxvY2FsaG9zdAAAAAAAAAAAAA=='])
      ch.publish(f.ex.name, 'k', Buffer.from(JSON.stringify(body)), {
        replyTo,
        correlationId: 'c1',
        messageId: unique('gone'),
        contentType: 'application/json',
      });
    await ch.waitForConfirms();
    await until(() => asked === 2, { timeout: 10_000, message: () => `both asked (${asked})` });
    const r = await ((await f.producer()) as unknown as Record<string, Rpc>).rpc_ask({}, { _timeout: 5 });
    expect(r.body.content).to.deep.equal({ type: 'success', value: 3, message: '' });
    expect(await settledQueue(f.queue)).to.deep.equal({ consumers: 1, ready: 0, unacked: 0 });
  });
});

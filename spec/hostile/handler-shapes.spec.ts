/**
 * A handler's shape must not change what becomes of its delivery: a plain
 * function, an async one, one that returns a promise, a custom thenable, a
 * generator, or a plain function that returns a generator object, each
 * returning a value, throwing, or throwing a control signal (RejectMessage,
 * RequeueMessage, DeferMessage) at once or after a wait, or never settling.
 * Every shape must give the same outcomes, runs and RPC answers as the others.
 */
import { expect } from 'chai';
import {
  DeferMessage,
  type DeliveryEvent,
  MessageHandler,
  MessageProcessor,
  RejectMessage,
  RequeueMessage,
  RpcHandler,
} from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { brokerUrl } from '../support/broker.js';
import { exchangeFixture } from '../support/components.js';
import { deleteTopology, settledQueue, unique } from '../support/topology.js';
import { until } from '../support/wait.js';

type Act = 'value' | 'error' | 'reject' | 'requeue' | 'defer' | 'hang';
type Params = { parameters: { act: Act; id: string } };

const SHAPES = ['sync', 'async', 'promise', 'thenable', 'generator', 'returnsGenerator'] as const;
type Shape = (typeof SHAPES)[number];

/** How often each message id ran. */
const runs = new Map<string, number>();

/** What a run does, as a plain function: the value, or a throw; 'hang' never returns (not reached by 'sync'). */
function act(p: Params['parameters']): number {
  const n = (runs.get(p.id) ?? 0) + 1;
  runs.set(p.id, n);
  switch (p.act) {
    case 'value':
      return 7;
    case 'error':
      throw new RangeError(`boom ${p.id}`);
    case 'reject':
      throw new RejectMessage('no');
    case 'requeue':
      if (n === 1) throw new RequeueMessage('not yet');
      return 7;
    case 'defer':
      if (n === 1) throw new DeferMessage(50, 'later');
      return 7;
    case 'hang':
      return -1;
  }
}

const never = new Promise<never>(() => undefined);

function shaped(shape: Shape, p: Params['parameters']): unknown {
  switch (shape) {
    case 'sync':
      return act(p);
    case 'async':
      return (async () => {
        const v = act(p);
        if (p.act === 'hang') await never;
        return v;
      })();
    case 'promise':
      if (p.act === 'hang') {
        act(p);
        return never;
      }
      return new Promise((resolve) => setImmediate(resolve)).then(() => act(p));
    case 'thenable': {
      // Not a Promise: a PromiseLike that settles at once, or never.
      const v = (() => {
        try {
          return { ok: true as const, v: act(p) };
        } catch (err) {
          return { ok: false as const, err };
        }
      })();
      return {
        then(resolve: (v: unknown) => void, reject: (e: unknown) => void) {
          if (p.act === 'hang') return;
          if (v.ok) resolve(v.v);
          else reject(v.err);
        },
      };
    }
    case 'generator':
    case 'returnsGenerator':
      return (function* () {
        yield;
        const v = act(p);
        if (p.act === 'hang') yield never;
        return v;
      })();
  }
}

class Shapes extends MessageProcessor {
  @MessageHandler('command', 'sync')
  sync(c: Params) {
    return shaped('sync', c.parameters);
  }
  @MessageHandler('command', 'async')
  async async(c: Params) {
    return await (shaped('async', c.parameters) as Promise<unknown>);
  }
  @MessageHandler('command', 'promise')
  promise(c: Params) {
    return shaped('promise', c.parameters);
  }
  @MessageHandler('command', 'thenable')
  thenable(c: Params) {
    return shaped('thenable', c.parameters);
  }
  @MessageHandler('command', 'generator')
  *generator(c: Params) {
    return yield* shaped('generator', c.parameters) as Generator<unknown, unknown, unknown>;
  }
  @MessageHandler('command', 'returnsGenerator')
  returnsGenerator(c: Params) {
    return shaped('returnsGenerator', c.parameters);
  }

  @RpcHandler('command', 'rpc_sync')
  rpcSync(c: Params) {
    return shaped('sync', c.parameters);
  }
  @RpcHandler('command', 'rpc_async')
  async rpcAsync(c: Params) {
    return await (shaped('async', c.parameters) as Promise<unknown>);
  }
  @RpcHandler('command', 'rpc_promise')
  rpcPromise(c: Params) {
    return shaped('promise', c.parameters);
  }
  @RpcHandler('command', 'rpc_thenable')
  rpcThenable(c: Params) {
    return shaped('thenable', c.parameters);
  }
  @RpcHandler('command', 'rpc_generator')
  *rpcGenerator(c: Params) {
    return yield* shaped('generator', c.parameters) as Generator<unknown, unknown, unknown>;
  }
  @RpcHandler('command', 'rpc_returnsGenerator')
  rpcReturnsGenerator(c: Params) {
    return shaped('returnsGenerator', c.parameters);
  }
}

describe('A handler of any shape (plain, async, promise, thenable, generator)', function () {
  this.timeout(60_000);
  const f = exchangeFixture('shapes', brokerUrl, unique, deleteTopology);

  const EXPECTED: Record<Act, { outcomes: DeliveryEvent['outcome'][]; runs: number }> = {
    value: { outcomes: ['acked'], runs: 1 },
    // retry.attempts 2: run again in the process, then rejected (no error exchange).
    error: { outcomes: ['rejected'], runs: 2 },
    reject: { outcomes: ['rejected'], runs: 1 },
    requeue: { outcomes: ['requeued', 'acked'], runs: 2 },
    defer: { outcomes: ['deferred', 'acked'], runs: 2 },
    hang: { outcomes: ['rejected'], runs: 2 },
  };

  for (const deduplicate of [false, true])
    it(`settles a message the same way whatever its shape: value, throw, Reject/Requeue/DeferMessage, a time limit${
      deduplicate ? ' (deduplicate: the claim given back by each failed run)' : ''
    }`, async () => {
      await settlesAlike(deduplicate);
    });

  async function settlesAlike(deduplicate: boolean): Promise<void> {
    runs.clear();
    const proc = new Shapes({
      url: f.url,
      logger: makeLogger('silent'),
      deduplicate,
      retry: { attempts: 2, backoffMs: 10 },
      handlerTimeoutMs: 300,
      concurrency: 4,
      eqk: [[f.ex, [[f.queue, 'k']]]],
    });
    const events = new Map<string, DeliveryEvent[]>();
    proc.observe((e) => {
      const id = e.messageId ?? '?';
      events.set(id, [...(events.get(id) ?? []), e]);
    });
    await f.h.start(proc);
    const p = await f.producer();
    const acts = Object.keys(EXPECTED) as Act[];
    const ids: string[] = [];
    for (const shape of SHAPES)
      for (const a of acts) {
        if (shape === 'sync' && a === 'hang') continue;
        const id = `${shape}-${a}`;
        ids.push(id);
        await (p as unknown as Record<string, (x: unknown, o: unknown) => Promise<void>>)[`message_${shape}`](
          { act: a, id },
          { _message_id: id },
        );
      }
    const final = (id: string) => EXPECTED[id.slice(id.lastIndexOf('-') + 1) as Act].outcomes.length;
    await until(() => ids.every((id) => (events.get(id)?.length ?? 0) >= final(id)), {
      timeout: 30_000,
      message: () => `every message settled: ${ids.filter((id) => (events.get(id)?.length ?? 0) < final(id))} not`,
    });
    const got: Record<string, unknown> = {};
    const want: Record<string, unknown> = {};
    for (const id of ids) {
      const a = id.slice(id.lastIndexOf('-') + 1) as Act;
      got[id] = { outcomes: events.get(id)?.map((e) => e.outcome), runs: runs.get(id) };
      want[id] = EXPECTED[a];
    }
    expect(got).to.deep.equal(want);
    for (const shape of SHAPES.filter((s) => s !== 'sync')) {
      const err = events.get(`${shape}-hang`)?.[0]?.error as Error | undefined;
      expect(err?.name, `${shape}-hang failed by its time limit`).to.equal('HandlerTimeout');
    }
    for (const shape of SHAPES) {
      const err = events.get(`${shape}-error`)?.[0]?.error as Error | undefined;
      expect(err?.message, `${shape}-error failed with its own error`).to.equal(`boom ${shape}-error`);
    }
    expect(await settledQueue(f.queue)).to.deep.equal({ consumers: 1, ready: 0, unacked: 0 });
  }

  it('answers an RPC the same way whatever its shape: the value, the exception, the time limit', async () => {
    runs.clear();
    await f.h.start(
      new Shapes({
        url: f.url,
        logger: makeLogger('silent'),
        handlerTimeoutMs: 300,
        concurrency: 4,
        eqk: [[f.ex, [[f.queue, 'k']]]],
      }),
    );
    const p = (await f.producer()) as unknown as Record<
      string,
      (x: unknown, o: unknown) => Promise<{ ok: boolean; body: { content: unknown } }>
    >;
    const got: Record<string, unknown> = {};
    const want: Record<string, unknown> = {};
    await Promise.all(
      SHAPES.flatMap((shape) =>
        (['value', 'error', 'hang'] as const)
          .filter((a) => !(shape === 'sync' && a === 'hang'))
          .map(async (a) => {
            const id = `rpc-${shape}-${a}`;
            const r = await p[`rpc_rpc_${shape}`]({ act: a, id }, { _timeout: 10, _max_retry: 0 });
            got[id] = { ok: r.ok, content: r.body.content };
            want[id] =
              a === 'value'
                ? { ok: true, content: { type: 'success', value: 7, message: '' } }
                : a === 'error'
                  ? { ok: false, content: { type: 'exception', value: 'RangeError', message: `boom ${id}` } }
                  : { ok: false, content: { type: 'exception', value: 'HandlerTimeout', message: '(see below)' } };
          }),
      ),
    );
    // The time limit's text is the library's; only its name is pinned.
    for (const [id, g] of Object.entries(got))
      if (id.endsWith('-hang')) (g as { content: { message: string } }).content.message = '(see below)';
    expect(got).to.deep.equal(want);
  });
});

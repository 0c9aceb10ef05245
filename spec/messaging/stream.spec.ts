import { expect } from 'chai';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { BrokerError, MessageProcessor, RpcHandler, StreamError, type ProcessorDescription } from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { deferred, dropConnection, exchangeFixture } from '../support/components.js';

const quiet = makeLogger('silent');

/** `global.gc`, without starting node with --expose-gc. */
function collector(): () => void {
  v8.setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

describe('RPC streams', function () {
  this.timeout(60_000);
  const f = exchangeFixture('stream');

  const state = { produced: 0, stopped: deferred() };
  beforeEach(() => {
    state.produced = 0;
    state.stopped = deferred();
  });

  class Numbers extends MessageProcessor {
    @RpcHandler('command', 'count')
    async *count(content: { parameters: { to: number } }) {
      for (let i = 0; i < content.parameters.to; i++) {
        state.produced++;
        yield i;
      }
    }

    @RpcHandler('command', 'forever')
    async *forever() {
      try {
        for (let i = 0; ; i++) {
          state.produced++;
          await new Promise((r) => setImmediate(r));
          yield i;
        }
      } finally {
        state.stopped.resolve();
      }
    }

    @RpcHandler('command', 'fails')
    async *fails() {
      yield 'a';
      yield 'b';
      yield 'c';
      throw new RangeError('the third was the last');
    }

    @RpcHandler('command', 'plain')
    plain() {
      return 'one result';
    }

    @RpcHandler('command', 'sync', { stream: true })
    *sync() {
      yield* ['x', 'y', 'z'];
    }
  }

  async function server() {
    const s = new Numbers({ url: f.url, logger: quiet, eqk: [[f.ex, [[f.queue, 'k']]]] });
    await f.h.start(s);
    return s;
  }

  it('streams 10,000 items in order, the server never more than its window ahead of a slow caller', async () => {
    await server();
    const p = await f.producer();
    let taken = 0;
    let ahead = 0;
    for await (const v of p.rpcStream_count({ to: 10_000 }, { _window: 32 })) {
      expect(v).to.equal(taken);
      taken++;
      ahead = Math.max(ahead, state.produced - taken);
      // The first few hundred slowly: the server must wait for credit, not run ahead.
      if (taken < 300) await new Promise((r) => setTimeout(r, 1));
    }
    expect(taken).to.equal(10_000);
    expect(ahead).to.be.at.most(32 + 1);
  });

  it('tells the server when the caller stops halfway: its generator is closed and its finally runs; stopping twice does nothing', async () => {
    await server();
    const p = await f.producer();
    const it = p.rpcStream_forever({});
    let n = 0;
    for await (const v of it) {
      expect(v).to.equal(n);
      if (++n === 100) break;
    }
    await state.stopped.promise;
    expect(await it.return!()).to.deep.equal({ done: true, value: undefined });
    expect(state.produced).to.be.below(100 + 64 + 2);
  });

  it("ends with the handler's error after the items it yielded", async () => {
    await server();
    const p = await f.producer();
    const got: unknown[] = [];
    const err = await (async () => {
      for await (const v of p.rpcStream_fails({})) got.push(v);
    })().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(got).to.deep.equal(['a', 'b', 'c']);
    expect(err).to.be.instanceOf(StreamError);
    expect(err).to.include({ reason: 'remote', remoteName: 'RangeError' });
    expect((err as Error).message).to.contain('the third was the last');
  });

  it('streams a generator tagged { stream: true }', async () => {
    await server();
    const p = await f.producer();
    const got: unknown[] = [];
    for await (const v of p.rpcStream_sync({})) got.push(v);
    expect(got).to.deep.equal(['x', 'y', 'z']);
  });

  it('fails the iteration when the handler is not a stream, and when no queue takes the request', async () => {
    await server();
    const p = await f.producer();
    const plain = await p
      .rpcStream_plain({})
      .next()
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(plain).to.be.instanceOf(StreamError).and.include({ reason: 'not-a-stream' });
    const nowhere = await p
      .rpcStream_count({ to: 1 }, { _key: 'nobody' })
      .next()
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(nowhere).to.be.instanceOf(BrokerError).and.include({ code: 'UNROUTABLE' });
  });

  it('ends with an error, never hangs, when the server goes mid-stream', async () => {
    const s = await server();
    const p = await f.producer();
    const it = p.rpcStream_forever({}, { _timeout: 1 });
    let n = 0;
    const err = await (async () => {
      for await (const _ of it) if (++n === 50) dropConnection(s);
    })().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(StreamError).and.include({ reason: 'idle' });
    expect(n).to.be.at.least(50);
  });

  it('stops the server side of a stream whose caller vanished', async () => {
    await server();
    const p = await f.producer();
    const it = p.rpcStream_forever({}, { _timeout: 1, _window: 8 });
    await it.next();
    // The caller's connection goes without a word (no cancel): the server stops hearing from it.
    (p.connection!.connection as unknown as { stream: { destroy(e: Error): void } }).stream.destroy(
      Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }),
    );
    await state.stopped.promise;
  });

  it('cancels a stream whose caller keeps its connection but takes nothing for streamStallMs: its worker is free again, its finally runs, and a late read fails with StreamError', async () => {
    const s = new Numbers({
      url: f.url,
      logger: quiet,
      concurrency: 2,
      streamStallMs: 400,
      eqk: [[f.ex, [[f.queue, 'k']]]],
    });
    await f.h.start(s);
    const p = await f.producer();
    // Both workers taken by callers that read one item and stop reading, without return(): their keepalives go on.
    const held = [p.rpcStream_forever({}, { _window: 4 }), p.rpcStream_forever({}, { _window: 4 })];
    for (const it of held) await it.next();
    await state.stopped.promise;
    const r = await p.rpc_plain({}, { _timeout: 5, _max_retry: 0 });
    expect(r.body.content.value).to.equal('one result');
    // The items it had sent are still there; then the cancellation.
    const late = await (async () => {
      for (;;) await held[0].next();
    })().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(late).to.be.instanceOf(StreamError).and.include({ remoteName: 'StreamStalled' });
  });

  it("tells the server when a caller's iterator is dropped without return() and collected: its finally runs long before streamStallMs", async () => {
    const gc = collector();
    await server();
    const p = await f.producer();
    await (async () => {
      const it = p.rpcStream_forever({}, { _window: 4 });
      await it.next();
      // Dropped here: nothing refers to it after this function returns.
    })();
    // Collected, then its finalizer cancels the stream: the default streamStallMs (60 s) is far off.
    for (let i = 0; i < 50; i++) {
      gc();
      const stopped = await Promise.race([
        state.stopped.promise.then(() => true),
        new Promise<false>((r) => setTimeout(() => r(false), 100)),
      ]);
      if (stopped) return;
    }
    expect.fail('the server never heard that the dropped stream was over');
  });

  it('is described as a stream', async () => {
    await server();
    const p = await f.producer();
    const r = await p.rpc_describe({}, { _timeout: 10, _max_retry: 0 });
    const d = r.body.content.value as ProcessorDescription;
    expect(
      d.handlers
        .filter((h) => h.kind === 'stream')
        .map((h) => h.name)
        .sort(),
    ).to.deep.equal(['count', 'fails', 'forever', 'sync']);
  });
});

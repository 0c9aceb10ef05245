/** serve(...components): the ready → scheduler → run → close dance in one call. */
import { expect } from 'chai';
import amqp from 'amqplib';
import { MessageHandler, MessageProcessor, serve } from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { deferred, exchangeFixture } from '../support/components.js';
import { deleteTopology, unique } from '../support/topology.js';

const quiet = makeLogger('silent');

describe('serve()', function () {
  this.timeout(20_000);
  const f = exchangeFixture('serve');

  it('makes every processor ready, runs them on one scheduler, and close() drains them and resolves done', async () => {
    const got: string[] = [];
    const both = deferred();
    class A extends MessageProcessor {
      @MessageHandler('command', 'job')
      job() {
        got.push('a');
        if (got.length === 2) both.resolve();
      }
    }
    class B extends MessageProcessor {
      @MessageHandler('command', 'job')
      async job() {
        await new Promise((r) => setTimeout(r, 50));
        got.push('b');
        if (got.length === 2) both.resolve();
      }
    }
    const other = unique('serve-q2');
    f.h.onClose(() => deleteTopology([other]));
    const served = await serve(
      new A({ url: f.url, logger: quiet, eqk: [[f.ex, [[f.queue, 'k']]]] }),
      new B({ url: f.url, logger: quiet, eqk: [[f.ex, [[other, 'k']]]] }),
      { handleSignals: false },
    );
    const send = await f.producer();
    await send.message_job({});
    await both.promise;
    expect(got.sort()).to.deep.equal(['a', 'b']);
    await served.close();
    await served.done;
    expect(served.components.every((c) => (c as MessageProcessor).status.state === 'closed')).to.equal(true);
  });

  it('rejects when a processor is refused, closing the others, and works with await using', async () => {
    const taken = unique('serve-taken');
    const admin = await amqp.connect(f.url);
    try {
      await (await admin.createChannel()).assertQueue(taken, { durable: true });
      class Quiet extends MessageProcessor {}
      const ok = new Quiet({ url: f.url, logger: quiet, handleSignals: false, eqk: [[f.ex, [[f.queue, 'k']]]] });
      const refused = new Quiet({
        url: f.url,
        logger: quiet,
        handleSignals: false,
        eqk: [[f.ex, [[{ name: taken, flags: { durable: false } }, 'k']]]],
      });
      const err = await serve(ok, refused, { handleSignals: false }).then(
        () => undefined,
        (e: unknown) => e as { code?: string },
      );
      expect(err?.code).to.equal('PRECONDITION_FAILED');
      expect(ok.status.state).to.equal('closed');
      let outer: Awaited<ReturnType<typeof serve>> | undefined;
      {
        await using served = await serve(new Quiet({ url: f.url, logger: quiet, eqk: [[f.ex, [[f.queue, 'k']]]] }), {
          handleSignals: false,
        });
        outer = served;
      }
      await outer.done;
    } finally {
      await admin.close();
      await deleteTopology([taken]).catch(() => undefined);
    }
  });
});

import { expect } from 'chai';
import sinon from 'sinon';
import {
  HandlerTimeout,
  MessageCommand,
  MessageHandler,
  MessageProcessor,
  RpcCommand,
  RpcHandler,
} from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { ProcessorHarness } from '../../lib/testing/index.js';

const never = () => new Promise<never>(() => undefined);

/**
 * Handler-level specs, through postage-ts/testing's harness (the real
 * dispatch, no broker) on a fake clock: the time limits pass in no time.
 */
describe('a handler that never finishes', () => {
  let clock: sinon.SinonFakeTimers;
  beforeEach(() => (clock = sinon.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] })));
  afterEach(() => clock.restore());

  it('fails its delivery with HandlerTimeout after handlerTimeoutMs, to the error exchange, logged at error, and the processor goes on', async () => {
    const lines: string[] = [];
    class Stuck extends MessageProcessor {
      @MessageHandler('command', 'stuck')
      async stuck() {
        await never();
      }
      @MessageHandler('command', 'fine')
      fine() {}
    }
    const h = await ProcessorHarness.start(Stuck, {
      handleSignals: false,
      handlerTimeoutMs: 200,
      errorExchange: 'ht-errors',
      logger: makeLogger('error', { write: (l: string) => void lines.push(l) }),
    });
    try {
      const stuck = h.deliver(new MessageCommand('stuck', {}));
      await clock.tickAsync(250);
      const r = await stuck;
      expect(r.outcome).to.equal('dead-lettered');
      expect(r.error).to.be.instanceOf(HandlerTimeout);
      expect((r.error as Error).message).to.contain('ran longer than 200 ms');
      expect(lines.some((l) => l.includes('"level":50') && l.includes('HandlerTimeout'))).to.equal(true);
      expect((await h.deliver(new MessageCommand('fine', {}))).outcome).to.equal('acked');
    } finally {
      await h.close();
    }
  });

  it("closes a generator handler past its decorator's timeoutMs, so its finally runs", async () => {
    let closedAt: number | undefined;
    const started = Date.now();
    class Stuck extends MessageProcessor {
      @MessageHandler('command', 'stuck', { timeoutMs: 150 })
      *stuck() {
        try {
          yield never();
        } finally {
          closedAt = Date.now() - started;
        }
      }
    }
    const h = await ProcessorHarness.start(Stuck, {
      handleSignals: false,
      handlerTimeoutMs: 60_000,
      logger: makeLogger('silent'),
    });
    try {
      const r = h.deliver(new MessageCommand('stuck', {}));
      await clock.tickAsync(200);
      expect((await r).error).to.be.instanceOf(HandlerTimeout);
      expect(closedAt).to.be.within(150, 200);
    } finally {
      await h.close();
    }
  });

  it('answers an RPC whose handler never finishes with MessageResultException(HandlerTimeout)', async () => {
    class Stuck extends MessageProcessor {
      @RpcHandler('command', 'stuck')
      async stuck() {
        await never();
      }
    }
    const h = await ProcessorHarness.start(Stuck, {
      handleSignals: false,
      handlerTimeoutMs: 150,
      logger: makeLogger('silent'),
    });
    try {
      const r = h.deliver(new RpcCommand('stuck', {}));
      await clock.tickAsync(200);
      expect((await r).reply!.content).to.deep.include({ type: 'exception', value: 'HandlerTimeout' });
    } finally {
      await h.close();
    }
  });

  it('refuses a time limit that is not a positive number', () => {
    expect(() => new MessageProcessor({ handlerTimeoutMs: 0 })).to.throw(TypeError, /handlerTimeoutMs/);
    expect(() => MessageHandler('command', 'x', { timeoutMs: -1 })).to.throw(TypeError, /timeoutMs/);
  });
});

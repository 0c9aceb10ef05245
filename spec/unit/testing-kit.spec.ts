import { expect } from 'chai';
import sinon from 'sinon';
import {
  DeferMessage,
  GenericProducer,
  MalformedMessage,
  MessageCommand,
  MessageHandler,
  MessageProcessor,
  RejectMessage,
  RequeueMessage,
  RpcCommand,
  RpcHandler,
  sleep,
  ValidationError,
  type MessageSender,
  type RpcSender,
} from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { ProcessorHarness, testProducer } from '../../lib/testing/index.js';
import { command } from '../support/schema.js';

const quiet = makeLogger('silent');

class Notifications extends GenericProducer {
  static override eks = [[{ name: 'notify', type: 'direct' }, 'email'] as const];
  build_message_email(to: string) {
    return new MessageCommand('email', { to });
  }
  declare rpc_quota: RpcSender;
}
const notify = testProducer(Notifications, {
  rpc: {
    quota: (p) => ({ left: 10 - Number(p.used) }),
    broken: () => {
      throw new RangeError('no quota service');
    },
  },
});

let runs = 0;
class Orders extends MessageProcessor {
  @MessageHandler('command', 'place', { schema: command({ item: 'string' }) })
  async place(content: { parameters: { item: string } }) {
    runs++;
    await notify.message_email(`${content.parameters.item}@example.com`);
    if (content.parameters.item === 'bomb') throw new Error('the order failed after its email');
  }

  @MessageHandler('command', 'refuse')
  refuse() {
    throw new RejectMessage('not today');
  }

  @MessageHandler('command', 'later')
  later() {
    throw new DeferMessage(5_000, 'try again in 5 s');
  }

  @MessageHandler('command', 'busy')
  busy() {
    throw new RequeueMessage('busy');
  }

  @MessageHandler('command', 'slow')
  *slow() {
    yield sleep(20);
    runs++;
  }

  @RpcHandler('command', 'total')
  total(content: { parameters: { a: number; b: number } }) {
    return content.parameters.a + content.parameters.b;
  }
}

describe('ProcessorHarness (postage-ts/testing)', () => {
  let h: ProcessorHarness<Orders>;
  beforeEach(async () => {
    runs = 0;
    h = await ProcessorHarness.start(Orders, {
      logger: quiet,
      handleSignals: false,
      errorExchange: 'orders-errors',
      retry: { attempts: 3, backoffMs: 1000 },
    });
  });
  afterEach(() => h.close());

  it('acks a handled message and shows what its handlers sent, with their properties', async () => {
    const r = await h.deliver(new MessageCommand('place', { item: 'book' }), { messageId: 'order-1' });
    expect(r.outcome).to.equal('acked');
    expect(r.sent).to.have.length(1);
    expect(r.sent[0]).to.deep.include({ exchange: 'notify', routingKey: 'email' });
    expect(r.sent[0].body.content).to.deep.equal({ parameters: { to: 'book@example.com' } });
    expect(r.sent[0].properties.headers).to.include({
      'postage-causation-id': 'order-1',
      'postage-conversation-id': 'order-1',
    });
  });

  it("runs the real retries (driven here by a fake clock), drops a failed run's sends, and dead-letters with the attempts", async () => {
    const clock = sinon.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const result = h.deliver(new MessageCommand('place', { item: 'bomb' }));
      // Two backoffs: 1 s, then 2 s.
      await clock.tickAsync(3_500);
      const r = await result;
      expect(runs).to.equal(3);
      expect(r.outcome).to.equal('dead-lettered');
      expect(r.deadLetter).to.deep.equal({ exchange: 'orders-errors', attempts: 3 });
      expect((r.error as Error).message).to.equal('the order failed after its email');
      expect(r.sent).to.deep.equal([]);
    } finally {
      clock.restore();
    }
  });

  it('tells rejects, defers, requeues, schema failures and malformed bodies apart, with the reason', async () => {
    const refused = await h.deliver(new MessageCommand('refuse', {}));
    expect(refused.outcome).to.equal('dead-lettered');
    expect(refused.error).to.be.instanceOf(RejectMessage);
    const later = await h.deliver(new MessageCommand('later', {}));
    expect(later).to.deep.include({ outcome: 'deferred', deferMs: 5_000 });
    expect(later.deferHeaders).to.deep.equal({ 'postage-deferrals': 1 });
    expect((await h.deliver(new MessageCommand('busy', {}))).outcome).to.equal('requeued');
    const invalid = await h.deliver(new MessageCommand('place', { item: 42 }));
    expect(invalid.outcome).to.equal('dead-lettered');
    expect(invalid.error).to.be.instanceOf(ValidationError);
    // Unreadable, it goes to the error queue whole (no handler ran), to be replayed once its cause is mended.
    const garbage = await h.deliver('{not json');
    expect(garbage.outcome).to.equal('dead-lettered');
    expect(garbage.deadLetter).to.deep.equal({ exchange: 'orders-errors', attempts: 0 });
    expect(garbage.error).to.be.instanceOf(MalformedMessage);
  });

  it('answers RPCs, and runs generator handlers on its scheduler', async () => {
    const r = await h.deliver(new RpcCommand('total', { a: 2, b: 3 }));
    expect(r.outcome).to.equal('acked');
    expect(r.reply!.content).to.deep.include({ type: 'success', value: 5 });
    const unknown = await h.deliver(new RpcCommand('nope', {}));
    expect(unknown.reply!.content).to.deep.include({ type: 'error' });
    expect((await h.deliver(new MessageCommand('slow', {}))).outcome).to.equal('acked');
    expect(runs).to.equal(1);
  });
});

describe('ProcessorHarness with deduplicate', () => {
  it('resolves each of two deliveries of one message id made at once with its own outcome (the copy deferred)', async () => {
    let release = (): void => undefined;
    let ran = 0;
    class Once extends MessageProcessor {
      @MessageHandler('command', 'job')
      async job() {
        ran++;
        await new Promise<void>((r) => (release = r));
      }
    }
    const h = await ProcessorHarness.start(Once, {
      logger: quiet,
      handleSignals: false,
      deduplicate: true,
      concurrency: 2,
    });
    try {
      const first = h.deliver(new MessageCommand('job', {}), { messageId: 'same' });
      const copy = await h.deliver(new MessageCommand('job', {}), { messageId: 'same' });
      expect([copy.outcome, copy.deferMs]).to.deep.equal(['deferred', 2_000]);
      release();
      expect((await first).outcome).to.equal('acked');
      expect(ran).to.equal(1);
    } finally {
      await h.close();
    }
  });
});

describe('testProducer (postage-ts/testing)', () => {
  it('records sends typed as the real producer, and answers RPCs from canned answers', async () => {
    const p = testProducer(Notifications, {
      rpc: {
        quota: (params) => ({ left: 10 - Number(params.used) }),
        broken: () => {
          throw new RangeError('down');
        },
      },
    });
    await p.message_email('a@example.com');
    await p.message_email('b@example.com', { _delay: 1_000 });
    expect(
      p.sent.map((s) => [s.body.name, (s.body.content as { parameters: { to: string } }).parameters.to, s.delayMs]),
    ).to.deep.equal([
      ['email', 'a@example.com', undefined],
      ['email', 'b@example.com', 1_000],
    ]);
    const q = await p.rpc_quota({ used: 3 });
    expect(q.body.content).to.deep.include({ type: 'success', value: { left: 7 } });
    const broken = await (p as unknown as { rpc_broken: RpcSender }).rpc_broken({});
    expect(broken.body.content).to.deep.include({ type: 'exception', value: 'RangeError', message: 'down' });
    class Bare extends GenericProducer {
      declare message_anything: MessageSender;
    }
    const none = await testProducer(Bare).rpc_missing({});
    expect(none.body.content.message).to.match(/No canned answer for RPC 'missing'/);
  });
});

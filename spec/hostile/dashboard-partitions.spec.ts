/**
 * Hostile: a dashboard opened on a fleet with a partitioned processor. The dashboard counts what each queue is sent
 * by binding a queue of its own as each component's queue is bound. A partition queue is bound to a consistent-hash
 * exchange, which routes each message to one queue only, by weight: a queue bound there beside the partitions is one
 * more partition, and the messages of the keys that hash to it never reach the processor.
 */
import { expect } from 'chai';
import {
  GenericProducer,
  MessageHandler,
  MessageProcessor,
  startDashboard,
  type ExchangeObject,
  type MessageSender,
} from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { brokerUrl, throwawayVhost } from '../support/broker.js';
import { postage } from '../support/cli.js';
import { Harness } from '../support/components.js';
import { until } from '../support/wait.js';

describe('Hostile: a dashboard (or postage watch) beside a partitioned processor', function () {
  this.timeout(60_000);

  it('takes none of its messages: every key reaches a partition while the dashboard watches', async () => {
    const url = await throwawayVhost(await brokerUrl(), 'dashparts');
    const exchange: ExchangeObject = { name: 'ledger-ex', type: 'direct' };
    const handled = new Set<string>();
    class Ledger extends MessageProcessor {
      @MessageHandler('command', 'post')
      post(content: { parameters: { account: string } }) {
        handled.add(content.parameters.account);
      }
    }
    const h = new Harness();
    const ledger = new Ledger({
      url,
      logger: makeLogger('silent'),
      handleSignals: false,
      fingerprint: { name: 'ledger' },
      partitions: 2,
      eqk: [[exchange, [['ledger', 'post']]]],
    });
    await h.start(ledger);
    const d = await startDashboard({ url, refreshMs: 200 });
    h.onClose(() => d.close());
    class Bank extends GenericProducer {
      static override eks = [[exchange, 'post'] as const];
      declare message_post: MessageSender;
    }
    const bank = await Bank.create({ url });
    h.onClose(() => bank.close());
    try {
      // The dashboard has seen the component and looked at its queues (it watches their bindings first).
      await until(
        async () => {
          const res = await fetch(new URL('/api/state', d.url), { headers: { 'x-postage-token': d.token } });
          const state = (await res.json()) as { queues: Array<{ name: string; messages: number | null }> };
          return state.queues.some((q) => q.name === 'ledger.p0' && q.messages !== null);
        },
        { timeout: 15_000, message: 'the dashboard showing ledger.p0' },
      );
      const accounts = Array.from({ length: 60 }, (_, i) => `acc-${i}`);
      for (const account of accounts) await bank.message_post({ account }, { _partition_key: account });
      await until(() => handled.size === accounts.length, {
        timeout: 10_000,
        message: () => `all 60 accounts handled, not ${handled.size}`,
      });
      expect([...handled].sort()).to.deep.equal(accounts.slice().sort());
    } finally {
      await h.close();
    }
  });

  it('postage watch refuses a consistent-hash exchange, whose messages it would take, naming the type', async () => {
    const url = await throwawayVhost(await brokerUrl(), 'watchparts');
    const h = new Harness();
    class Ledger extends MessageProcessor {
      @MessageHandler('command', 'post')
      post() {}
    }
    await h.start(
      new Ledger({
        url,
        logger: makeLogger('silent'),
        handleSignals: false,
        partitions: 2,
        eqk: [[{ name: 'ledger-ex', type: 'direct' }, [['ledger', 'post']]]],
      }),
    );
    try {
      const r = await postage(['watch', 'ledger.partitions', '1', '--count', '1'], { url, timeout: 10_000 });
      expect(r.code).to.equal(2);
      expect(r.stderr).to.match(/exchange 'ledger\.partitions' is x-consistent-hash: it routes each message to one/);
    } finally {
      await h.close();
    }
  });
});

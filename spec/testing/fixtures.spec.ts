import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { GenericProducer, MessageHandler, MessageProcessor, type MessageSender } from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { received, throwawayVhost } from '../../lib/testing/index.js';
import { brokerUrl } from '../support/broker.js';
import { Harness } from '../support/components.js';

const exec = promisify(execFile);
const vhosts = async () =>
  (await exec('rabbitmqctl', ['-q', 'list_vhosts', 'name'])).stdout.split('\n').map((l) => l.trim());

describe('throwawayVhost and received (postage-ts/testing)', function () {
  this.timeout(30_000);

  it('gives a test a vhost of its own with POSTAGE_URL pointing at it, awaits a delivery as an event, and removes the vhost after', async () => {
    const before = process.env.POSTAGE_URL;
    const vhost = await throwawayVhost(await brokerUrl());
    const h = new Harness();
    try {
      expect(process.env.POSTAGE_URL).to.equal(vhost.url);
      expect(await vhosts()).to.include(vhost.name);
      const ex = { name: 'fixtures', type: 'direct', durable: false } as const;
      class Resizer extends MessageProcessor {
        @MessageHandler('command', 'resize')
        resize() {}
      }
      // No url: the components find the broker, and the vhost, through POSTAGE_URL.
      const p = new Resizer({
        logger: makeLogger('silent'),
        handleSignals: false,
        eqk: [[ex, [['fixtures-q', 'resize']]]],
      });
      await h.start(p);
      class Images extends GenericProducer {
        static override eks = [[ex, 'resize'] as const];
        declare message_resize: MessageSender;
      }
      const images = await Images.create();
      h.onClose(() => images.close());
      const handled = received(p, 'command', 'resize');
      await images.message_resize({ width: 640 });
      expect(await handled).to.include({ type: 'command', name: 'resize', outcome: 'acked' });
      const none = await received(p, 'command', 'never', { timeoutMs: 100 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((none as Error).message).to.equal('Resizer received no command/never within 100 ms');
    } finally {
      await h.close();
      await vhost.release();
    }
    expect(process.env.POSTAGE_URL).to.equal(before);
    expect(await vhosts()).to.not.include(vhost.name);
  });
});

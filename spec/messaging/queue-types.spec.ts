import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { MessageProcessor } from '../../lib/index.js';
import { exchangeFixture } from '../support/components.js';

/** What the broker says of a queue: its type and arguments. */
async function described(url: string, queue: string): Promise<string> {
  const vhost = decodeURIComponent(new URL(url).pathname.slice(1)) || '/';
  const { stdout } = await promisify(execFile)('rabbitmqctl', [
    'list_queues',
    '-q',
    '-p',
    vhost,
    'name',
    'type',
    'arguments',
  ]);
  return stdout.split('\n').find((l) => l.startsWith(`${queue}\t`)) ?? '';
}

describe('queue types in eqk flags', function () {
  this.timeout(30_000);
  const f = exchangeFixture('qt');

  it('declares a quorum queue with a single active consumer from its flags', async () => {
    const p = new MessageProcessor({
      url: f.url,
      handleSignals: false,
      eqk: [[f.ex, [[{ name: f.queue, flags: { queueType: 'quorum', singleActiveConsumer: true } }, 'k']]]],
    });
    f.h.onClose(() => p.close());
    await p.ready();
    const line = await described(f.url, f.queue);
    expect(line).to.contain('quorum').and.contain('x-single-active-consumer');
  });

  it('declares durable named queues that choose no type with POSTAGE_QUEUE_TYPE, read when the component is created', async () => {
    const saved = process.env.POSTAGE_QUEUE_TYPE;
    process.env.POSTAGE_QUEUE_TYPE = 'quorum';
    try {
      const p = new MessageProcessor({ url: f.url, handleSignals: false, eqk: [[f.ex, [[f.queue, 'k']]]] });
      f.h.onClose(() => p.close());
      await p.ready();
    } finally {
      if (saved === undefined) delete process.env.POSTAGE_QUEUE_TYPE;
      else process.env.POSTAGE_QUEUE_TYPE = saved;
    }
    expect(await described(f.url, f.queue)).to.match(new RegExp(`^${f.queue.replace(/\./g, '\\.')}\\tquorum`));
  });

  it('refuses an exclusive quorum queue with a TopologyError, not a 406 from the broker', async () => {
    const p = new MessageProcessor({
      url: f.url,
      handleSignals: false,
      eqk: [[f.ex, [[{ name: f.queue, flags: { queueType: 'quorum', exclusive: true } }, 'k']]]],
    });
    f.h.onClose(() => p.close());
    const err = await p.ready().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as Error).name).to.equal('TopologyError');
    expect((err as Error).message).to.contain('a quorum queue cannot be exclusive');
  });
});

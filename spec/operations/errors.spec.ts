import { expect } from 'chai';
import amqp from 'amqplib';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import {
  BrokerError,
  currentDelivery,
  ErrorQueue,
  GenericProducer,
  MessageHandler,
  MessageProcessor,
  type ExchangeObject,
  type MessageSender,
} from '../../lib/index.js';
import { brokerUrl } from '../support/broker.js';
import { postage } from '../support/cli.js';
import { counter, Harness } from '../support/components.js';
import { deleteTopology, unique } from '../support/topology.js';
import { until } from '../support/wait.js';

describe('postage errors (error queues you can inspect and replay)', function () {
  this.timeout(90_000);
  let url: string;
  let h: Harness;
  let exchange: ExchangeObject;
  let queue: string;
  let errorQueue: string;
  let broken: boolean;
  let handled: string[];
  let settled: ReturnType<typeof counter>;

  class Shop extends MessageProcessor {
    @MessageHandler('command', 'resize')
    resize(): void {
      if (broken) throw new TypeError('width must be a number');
      handled.push(currentDelivery()!.messageId!);
    }

    @MessageHandler('command', 'crop')
    crop(): void {
      if (broken) throw new RangeError('crop outside the image');
      handled.push(currentDelivery()!.messageId!);
    }
  }

  beforeEach(async () => {
    url = await brokerUrl();
    h = new Harness();
    broken = true;
    handled = [];
    exchange = { name: unique('errors-ex'), type: 'direct' };
    queue = unique('errors-q');
    errorQueue = unique('errors-dlx');
    settled = counter(100);
    const shop = new Shop({
      url,
      fingerprint: { name: 'shop' },
      eqk: [[exchange, [[queue, 'shop']]]],
      errorExchange: errorQueue,
    });
    shop.observe(() => settled.hit());
    await h.start(shop);
    const target = exchange;
    class Client extends GenericProducer {
      static override eks = [[target, 'shop'] as const];
      declare message_resize: MessageSender;
      declare message_crop: MessageSender;
    }
    const client = await Client.create({ url });
    h.onClose(() => client.close());
    // 100 failures of two kinds: 60 resize (TypeError), 40 crop (RangeError), interleaved.
    for (let i = 0; i < 100; i++) {
      if (i % 5 < 3) await client.message_resize({ i });
      else await client.message_crop({ i });
    }
    await settled.done;
  });

  afterEach(async () => {
    await h.close();
    await deleteTopology([queue, errorQueue], [exchange.name, errorQueue]);
  });

  it('lists each failed message once, oldest first, and listing loses, reorders and redelivers nothing', async () => {
    await using eq = await ErrorQueue.open(errorQueue, { url });
    const first = await eq.list();
    const second = await eq.list();
    expect(first).to.have.length(100);
    expect(second.map((m) => m.id)).to.deep.equal(first.map((m) => m.id));
    expect(first[0]).to.include({
      messageType: 'command',
      messageName: 'resize',
      originalExchange: exchange.name,
      originalRoutingKey: 'shop',
      errorName: 'TypeError',
      errorMessage: 'width must be a number',
      attempts: 1,
      replayed: 0,
    });
    expect(first[0].failedAt).to.be.instanceOf(Date);
    const r = await postage(['errors', 'list', errorQueue], { url });
    expect(r.code, r.stderr).to.equal(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).to.match(/^WHEN\s+MESSAGE\s+ORIGIN\s+ERROR\s+ATTEMPTS\s+ID$/);
    expect(lines).to.have.length(101);
    expect(lines[1].split(/\s{2,}/)).to.deep.equal([
      first[0].failedAt!.toISOString(),
      'command/resize',
      `${exchange.name}/shop`,
      'TypeError: width must be a number',
      '1',
      first[0].id,
    ]);
    expect((await eq.list()).map((m) => m.id)).to.deep.equal(first.map((m) => m.id));
  });

  it('counts them by error and message name with --group', async () => {
    const r = await postage(['errors', 'list', errorQueue, '--group', '--json'], { url });
    expect(r.code, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout)).to.deep.equal([
      { queue: errorQueue, errorName: 'TypeError', messageName: 'resize', count: 60 },
      { queue: errorQueue, errorName: 'RangeError', messageName: 'crop', count: 40 },
    ]);
  });

  it('shows one message whole: headers, envelope', async () => {
    await using eq = await ErrorQueue.open(errorQueue, { url });
    const [m] = await eq.list();
    const r = await postage(['errors', 'show', errorQueue, m.id], { url });
    expect(r.code, r.stderr).to.equal(0);
    const shown = JSON.parse(r.stdout) as {
      headers: Record<string, unknown>;
      envelope: { type: string; name: string; content: { parameters: { i: number } } };
    };
    expect(shown.headers['x-error-name']).to.equal('TypeError');
    expect(shown.headers['x-original-exchange']).to.equal(exchange.name);
    expect(shown.envelope).to.deep.include({ type: 'command', name: 'resize', content: { parameters: { i: 0 } } });
    const missing = await postage(['errors', 'show', errorQueue, 'no-such-id'], { url });
    expect(missing.code).to.equal(1);
    expect(missing.stderr).to.contain(`no message no-such-id in ${errorQueue}`);
  });

  it('replays exactly the messages of one error to where they came from, where the fixed handler takes them', async () => {
    await using eq = await ErrorQueue.open(errorQueue, { url });
    const before = await eq.list();
    const typeErrors = before.filter((m) => m.errorName === 'TypeError').map((m) => m.id);
    const dry = await postage(['errors', 'replay', errorQueue, '--error', 'TypeError', '--dry-run'], { url });
    expect(dry.stdout.trim().split('\n')).to.have.length(60);
    expect(await eq.list()).to.have.length(100);

    broken = false;
    const took = counter(60);
    settled = took;
    const r = await postage(['errors', 'replay', errorQueue, '--error', 'TypeError'], { url });
    expect(r.code, r.stderr).to.equal(0);
    await took.done;
    expect([...handled].sort()).to.deep.equal([...typeErrors].sort());
    const left = await eq.list();
    expect(left).to.have.length(40);
    expect(left.every((m) => m.errorName === 'RangeError')).to.equal(true);
  });

  it('marks a replayed copy x-replayed and keeps its message id and conversation', async () => {
    await using eq = await ErrorQueue.open(errorQueue, { url });
    const [m] = await eq.list();
    const conn = await amqp.connect(url);
    try {
      const ch = await conn.createChannel();
      const { queue: spy } = await ch.assertQueue('', { exclusive: true });
      await ch.bindQueue(spy, exchange.name, 'copy');
      const r = await postage(['errors', 'replay', errorQueue, m.id, '--to', exchange.name, 'copy'], { url });
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout.trim()).to.equal(`replayed ${m.id} to ${exchange.name}/copy`);
      const got = await ch.get(spy, { noAck: true });
      expect(got).to.not.equal(false);
      const copy = got as amqp.GetMessage;
      expect(copy.properties.messageId).to.equal(m.id);
      expect(copy.properties.headers?.['x-replayed']).to.equal(1);
      expect(copy.properties.headers?.['postage-conversation-id']).to.equal(m.headers['postage-conversation-id']);
      expect(copy.properties.headers).to.not.have.property('x-error-name');
    } finally {
      await conn.close();
    }
    expect(await eq.list()).to.have.length(99);
  });

  it('keeps a message no queue takes in the error queue and exits 4', async () => {
    await using eq = await ErrorQueue.open(errorQueue, { url });
    const [m] = await eq.list();
    const r = await postage(['errors', 'replay', errorQueue, m.id, '--to', exchange.name, 'nobody-listens'], { url });
    expect(r.code).to.equal(4);
    expect(r.stderr).to.contain(`${m.id} not replayed: no queue is bound at ${exchange.name}/nobody-listens`);
    expect((await eq.list()).map((x) => x.id)).to.include(m.id);
  });

  it('loses nothing when killed -9 between a confirm and its ack: that one is a duplicate, the rest stay or went', async () => {
    broken = false;
    await using eq = await ErrorQueue.open(errorQueue, { url });
    const ids = (await eq.list()).map((m) => m.id);
    // The ten confirmed copies reach the handler; the tenth's original is back in the error queue too.
    const took = counter(10);
    settled = took;
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'spec/fixtures/errors/replay-then-die.ts', errorQueue, '10'],
      { env: { ...process.env, POSTAGE_URL: url }, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    child.stdout!.on('data', (c: Buffer) => (out += String(c)));
    const [, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
    expect(signal).to.equal('SIGKILL');
    const killedAt = /killed after confirming (\S+)/.exec(out)?.[1];
    expect(killedAt).to.equal(ids[9]);
    await took.done;
    // The broker drops the killed connection's exclusive lock queue a moment after its socket closes, not at once.
    const left = await until(
      () =>
        eq.list().then(
          (l) => l.map((m) => m.id),
          (err: Error) => {
            if (err instanceof BrokerError && /another tool/.test(err.message)) return undefined;
            throw err;
          },
        ),
      { message: "the broker to drop the killed tool's lock on the error queue" },
    );
    expect(left).to.have.length(91);
    expect(left[0]).to.equal(killedAt);
    expect(new Set([...handled, ...left])).to.deep.equal(new Set(ids));
  });

  it('purges only the messages named, after asking (unless --yes)', async () => {
    await using eq = await ErrorQueue.open(errorQueue, { url });
    const [a, b, c] = await eq.list();
    const refused = await postage(['errors', 'purge', errorQueue, a.id], { url, input: 'n\n' });
    expect(refused.code).to.equal(1);
    expect(refused.stderr)
      .to.contain(`remove 1 message(s) from ${errorQueue} for good? [y/N]`)
      .and.contain('nothing purged');
    const asked = await postage(['errors', 'purge', errorQueue, a.id], { url, input: 'y\n' });
    expect(asked.code, asked.stderr).to.equal(0);
    const r = await postage(['errors', 'purge', errorQueue, b.id, '--yes'], { url });
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout.trim()).to.equal(`purged ${b.id}`);
    const left = (await eq.list()).map((m) => m.id);
    expect(left).to.have.length(98);
    expect(left[0]).to.equal(c.id);
  });

  it('refuses usage it cannot act on, naming the fix', async () => {
    const none = await postage(['errors', 'replay', errorQueue], { url });
    expect(none.code).to.equal(2);
    expect(none.stderr).to.contain('say which messages: ID..., --all, --error NAME or --name NAME');
    const gone = await postage(['errors', 'list', 'no-such-queue-here'], { url });
    expect(gone.code).to.equal(2);
    expect(gone.stderr).to.contain("queue 'no-such-queue-here' does not exist");
  });
});

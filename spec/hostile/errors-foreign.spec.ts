/**
 * Hostile: `postage errors` on messages other systems sent (plain JSON, CloudEvents in binary and structured mode)
 * that a processor failed and put in its error queue. They carry no Postage message id, often none at all: the id
 * errors shows them by must still tell one failed message from another, or `show` hides one and `purge ID` removes
 * messages the operator never picked.
 */
import { expect } from 'chai';
import {
  CloudEventHandler,
  ErrorQueue,
  JsonHandler,
  MessageProcessor,
  type CloudEventAttributes,
} from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { ErrorViews } from '../../lib/operations/dashboard/error-views.js';
import { openConnection } from '../../lib/transport/connection.js';
import { brokerUrl } from '../support/broker.js';
import { postage } from '../support/cli.js';
import { counter, Harness } from '../support/components.js';
import { deleteTopology, publishRaw, unique } from '../support/topology.js';
import { until } from '../support/wait.js';

const json = (v: unknown) => Buffer.from(JSON.stringify(v));
const event = (id: string) => ({
  contentType: 'application/json',
  headers: {
    cloudEvents_specversion: '1.0',
    cloudEvents_id: id,
    cloudEvents_source: '/shop',
    cloudEvents_type: 'com.example.order.placed',
  },
});

describe('Hostile: postage errors on messages other systems sent', function () {
  this.timeout(60_000);
  let h: Harness;
  let ex: { name: string; type: 'topic' };
  let queue: string;
  let errorQueue: string;
  let broken: boolean;
  let got: Array<{ data: unknown; id?: string }>;

  class Shop extends MessageProcessor {
    @JsonHandler('orders.#')
    order(body: unknown) {
      if (broken) throw new TypeError('json handler broken');
      got.push({ data: body });
    }

    @CloudEventHandler('com.example.#')
    placed(data: unknown, e: CloudEventAttributes) {
      if (broken) throw new RangeError('event handler broken');
      got.push({ data, id: e.id });
    }
  }

  /** Publishes `n` foreign messages with `send` and waits until the (broken) shop has failed them all. */
  async function failed(n: number, send: () => Promise<void>): Promise<void> {
    const all = counter(n);
    const shop = new Shop({
      url: await brokerUrl(),
      logger: makeLogger('silent'),
      handleSignals: false,
      fingerprint: { name: 'shop' },
      eqk: [[ex, [[queue, '#']]]],
      errorExchange: errorQueue,
    });
    shop.observe(() => all.hit());
    await h.start(shop);
    await send();
    await all.done;
  }

  beforeEach(() => {
    h = new Harness();
    ex = { name: unique('ferr-ex'), type: 'topic' };
    queue = unique('ferr-q');
    errorQueue = unique('ferr-dlx');
    broken = true;
    got = [];
  });

  afterEach(async () => {
    await h.close();
    await deleteTopology([queue, errorQueue], [ex.name, errorQueue]);
  });

  it('gives two CloudEvents with the same data but their own ids two ids: show finds each, purge ID takes one', async () => {
    await failed(2, async () => {
      await publishRaw(ex.name, 'events.a', json({ orderId: 'B-1' }), event('e-1'));
      await publishRaw(ex.name, 'events.a', json({ orderId: 'B-1' }), event('e-2'));
    });
    const list = await postage(['errors', 'list', errorQueue, '--json']);
    const items = JSON.parse(list.stdout) as Array<{ id: string; headers: Record<string, unknown> }>;
    expect(items.map((m) => m.headers.cloudEvents_id)).to.deep.equal(['e-1', 'e-2']);
    const [first, second] = items.map((m) => m.id);
    expect(first, 'the two ids').to.not.equal(second);
    const shown = await postage(['errors', 'show', errorQueue, second]);
    expect(shown.code).to.equal(0);
    expect((JSON.parse(shown.stdout) as { headers: Record<string, unknown> }).headers.cloudEvents_id).to.equal('e-2');

    const purged = await postage(['errors', 'purge', errorQueue, first, '--yes']);
    expect(purged.stdout.trim()).to.equal(`purged ${first}`);
    await using q = await ErrorQueue.open(errorQueue, { url: await brokerUrl() });
    expect((await q.list()).map((m) => [m.id, m.headers.cloudEvents_id])).to.deep.equal([[second, 'e-2']]);

    // The fixed handler takes the one left, and it keeps its id when it fails again and is read again.
    broken = false;
    expect((await q.replay({ ids: [second] })).replayed).to.have.length(1);
    await until(() => got.length === 1, { message: () => `the replayed event handled: ${JSON.stringify(got)}` });
    expect(got).to.deep.equal([{ data: { orderId: 'B-1' }, id: 'e-2' }]);
  });

  it('gives one failed message the same id each time it fails again after a replay', async () => {
    await failed(1, () => publishRaw(ex.name, 'events.a', json({ orderId: 'B-1' }), event('e-1')));
    await using q = await ErrorQueue.open(errorQueue, { url: await brokerUrl() });
    const [before] = await q.list();
    expect((await q.replay({ all: true })).replayed).to.have.length(1);
    const again = await until(async () => (await q.list())[0], { message: 'the replayed copy failed again' });
    expect(again.replayed).to.equal(1);
    expect(again.id).to.equal(before.id);
  });

  it('gives plain JSON bodies alike sent to two routing keys two ids', async () => {
    await failed(2, async () => {
      await publishRaw(ex.name, 'orders.placed', json({ orderId: 'A-1' }), { contentType: 'application/json' });
      await publishRaw(ex.name, 'orders.cancelled', json({ orderId: 'A-1' }), { contentType: 'application/json' });
    });
    await using q = await ErrorQueue.open(errorQueue, { url: await brokerUrl() });
    const list = await q.list();
    expect(list.map((m) => m.originalRoutingKey)).to.deep.equal(['orders.placed', 'orders.cancelled']);
    expect(new Set(list.map((m) => m.id)).size).to.equal(2);
  });

  it('groups the messages that name no message as (no name), and the dashboard replays such a group whole', async () => {
    await failed(3, async () => {
      await publishRaw(ex.name, 'events.a', json({ orderId: 'B-1' }), event('e-1'));
      await publishRaw(ex.name, 'orders.placed', json({ orderId: 'A-1' }), { contentType: 'application/json' });
      await publishRaw(ex.name, 'orders.placed', json({ orderId: 'A-2' }), { contentType: 'application/json' });
    });
    const g = await postage(['errors', 'list', errorQueue, '--group']);
    expect(
      g.stdout
        .trim()
        .split('\n')
        .slice(1)
        .map((l) => l.split(/\s{2,}/).slice(1)),
    ).to.deep.equal([
      ['TypeError', '(no name)', '2'],
      ['RangeError', '(no name)', '1'],
    ]);

    // The page's "replay these" posts what the group says: a group of unnamed messages by its mark, not its label.
    const conn = await openConnection({ url: await brokerUrl() });
    h.onClose(() => conn.close());
    const views = new ErrorViews(conn, () => [errorQueue]);
    const { groups } = await views.list(errorQueue);
    const typeErrors = groups.find((x) => x.errorName === 'TypeError')!;
    expect(typeErrors).to.deep.equal({ errorName: 'TypeError', messageName: '(no name)', count: 2, unnamed: true });
    broken = false;
    const r = (await views.act('replay', { queue: errorQueue, errorName: 'TypeError', unnamed: true })) as {
      replayed: unknown[];
    };
    expect(r.replayed).to.have.length(2);
    await until(() => got.length === 2, { message: () => `the two replayed handled: ${JSON.stringify(got)}` });
    expect((await views.list(errorQueue)).groups.map((x) => x.errorName)).to.deep.equal(['RangeError']);
  });

  it('shows a CloudEvent whose data is text as that text, beside its exact bytes', async () => {
    await failed(1, () =>
      publishRaw(ex.name, 'events.b', Buffer.from('paid in full: 12 €'), {
        ...event('e-9'),
        contentType: 'text/plain',
      }),
    );
    const list = await postage(['errors', 'list', errorQueue, '--json']);
    const [{ id }] = JSON.parse(list.stdout) as Array<{ id: string }>;
    const shown = JSON.parse((await postage(['errors', 'show', errorQueue, id])).stdout) as Record<string, unknown>;
    expect(shown.contentText).to.equal('paid in full: 12 €');
    expect(Buffer.from(shown.contentBase64 as string, 'base64').toString()).to.equal('paid in full: 12 €');
  });
});

import { expect } from 'chai';
import { startDashboard, type Dashboard } from '../../lib/index.js';
import { throwawayVhost, brokerUrl } from '../support/broker.js';
import { postage } from '../support/cli.js';
import { until } from '../support/wait.js';
import { startFleet, type Fleet } from '../support/fleet.js';

describe('postage dashboard and postage graph (a fleet as a whole)', function () {
  this.timeout(60_000);
  let url: string;
  let fleet: Fleet;
  let d: Dashboard;

  before(async () => {
    // A vhost of its own: only this fleet answers on 'presence' there.
    url = await throwawayVhost(await brokerUrl(), 'fleet');
    fleet = await startFleet(url);
    d = await startDashboard({ url, refreshMs: 250 });
  });
  after(async () => {
    await d?.close();
    await fleet?.close();
  });

  const state = async () =>
    (await fetch(new URL('/api/state', d.url))).json() as Promise<{
      components: Array<{ fingerprint: { name: string }; up: boolean }>;
      queues: Array<{ name: string; messages: number | null }>;
      errorQueues: string[];
    }>;
  type State = Awaited<ReturnType<typeof state>>;

  /** Polls the dashboard's JSON until `ok` holds: the page is fed the same state every refresh. */
  async function stateWhere(ok: (v: State) => boolean, what: string): Promise<State> {
    let last: State | undefined;
    return until(async () => ((last = await state()), ok(last) && last), {
      timeout: 20_000,
      message: () => `the dashboard's state showing ${what}; it last showed ${JSON.stringify(last)}`,
    });
  }

  it('serves the page on loopback with the token in its address', async () => {
    expect(d.url).to.match(/^http:\/\/127\.0\.0\.1:\d+\/\?token=[\w-]{20,}$/);
    const page = await fetch(d.url);
    expect(page.headers.get('content-type')).to.contain('text/html');
    expect(await page.text()).to.contain('<title>postage-ts dashboard</title>');
  });

  it('shows the components that answer, with the error queue they report, and counts failures there', async () => {
    const s = await stateWhere((v) => v.components.length === 2, 'two components');
    expect(s.components.map((c) => c.fingerprint.name).sort()).to.deep.equal(['invoices', 'orders']);
    expect(s.errorQueues).to.deep.equal([fleet.errorQueue]);
    await fleet.order(3);
    await stateWhere((v) => v.queues.find((q) => q.name === fleet.errorQueue)?.messages === 3, '3 failed');
  });

  it('refuses replay and purge without the token, and does them with it', async () => {
    const body = JSON.stringify({ queue: fleet.errorQueue, all: true });
    const bare = await fetch(new URL('/api/errors/replay', d.url), {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json' },
    });
    expect(bare.status).to.equal(403);
    expect(((await bare.json()) as { error: string }).error).to.contain('X-Postage-Token');
    const wrong = await fetch(new URL('/api/errors/purge', d.url), {
      method: 'POST',
      body,
      headers: { 'x-postage-token': 'guess' },
    });
    expect(wrong.status).to.equal(403);
    const listed = (await (await fetch(new URL(`/api/errors?queue=${fleet.errorQueue}`, d.url))).json()) as {
      count: number;
      groups: unknown[];
    };
    expect(listed.count).to.equal(3);
    expect(listed.groups).to.deep.equal([{ errorName: 'TypeError', messageName: 'order', count: 3 }]);
    fleet.broken = false;
    const handled = fleet.expect(3);
    const ok = await fetch(new URL('/api/errors/replay', d.url), {
      method: 'POST',
      body,
      headers: { 'x-postage-token': d.token },
    });
    expect(ok.status).to.equal(200);
    expect(((await ok.json()) as { replayed: string[] }).replayed).to.have.length(3);
    await handled;
    await stateWhere((v) => v.queues.find((q) => q.name === fleet.errorQueue)?.messages === 0, 'none failed');
    fleet.broken = true;
  });

  it('draws the topology, and a conversation as a sequence diagram', async () => {
    const svg = await (await fetch(new URL('/api/graph.svg', d.url))).text();
    expect(svg).to.match(/^<svg /);
    expect(svg)
      .to.contain('generic-application-exchange')
      .and.contain('orders (')
      .and.contain('command/order')
      .and.contain(`errors: ${fleet.errorQueue}`);
    type Seen = Array<{ conversationId: string; what: string; from: string; to: string[] }>;
    const seen = await until(
      async () => {
        const v = (await (await fetch(new URL('/api/messages', d.url))).json()) as Seen;
        return v.some((m) => m.what === 'command/order') && v;
      },
      { timeout: 20_000, message: 'the dashboard listing a command/order among the messages seen' },
    );
    const order = seen.find((m) => m.what === 'command/order')!;
    expect(order.from).to.equal('shop');
    expect(order.to).to.deep.equal(['orders']);
    const conversation = (await (
      await fetch(new URL(`/api/conversation?id=${order.conversationId}`, d.url))
    ).json()) as { svg: string; messages: unknown[] };
    expect(conversation.messages.length).to.be.greaterThan(0);
    expect(conversation.svg).to.contain('class="message"').and.contain('>shop<').and.contain('>orders<');
  });

  it('postage graph prints the same topology as mermaid, dot or svg', async () => {
    const mermaid = await postage(['graph'], { url });
    expect(mermaid.code, mermaid.stderr).to.equal(0);
    expect(mermaid.stdout)
      .to.match(/^flowchart LR/)
      .and.contain('"orders (')
      .and.contain('|"orders"|');
    const dot = await postage(['graph', '--format', 'dot'], { url });
    expect(dot.stdout).to.match(/^digraph postage \{/);
    const bad = await postage(['graph', '--format', 'png'], { url });
    expect(bad.code).to.equal(2);
    expect(bad.stderr).to.contain("--format must be mermaid, dot or svg, not 'png'");
  });

  it('postage errors list reads the error queues the running components report', async () => {
    await fleet.order(2);
    await stateWhere((v) => v.queues.find((q) => q.name === fleet.errorQueue)?.messages === 2, '2 failed');
    const r = await postage(['errors', 'list', '--group', '--json'], { url });
    expect(r.code, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout)).to.deep.equal([
      { queue: fleet.errorQueue, errorName: 'TypeError', messageName: 'order', count: 2 },
    ]);
  });

  it('marks a component down once it stops answering, and keeps it on the page', async () => {
    await fleet.stopInvoices();
    const s = await stateWhere(
      (v) => v.components.some((c) => c.fingerprint.name === 'invoices' && !c.up),
      'invoices down',
    );
    expect(s.components.find((c) => c.fingerprint.name === 'orders')!.up).to.equal(true);
  });
});

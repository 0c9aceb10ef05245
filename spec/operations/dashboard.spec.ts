import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { request } from 'node:http';
import { startDashboard, type Dashboard } from '../../lib/index.js';
import { throwawayVhost, brokerUrl } from '../support/broker.js';
import { startFleet, type Fleet } from '../support/fleet.js';

function postage(args: string[], url: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'lib/cli/postage.ts', ...args],
      { timeout: 30_000, env: { ...process.env, POSTAGE_URL: url, POSTAGE_LOG_LEVEL: '' } },
      (err, stdout, stderr) =>
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** One HTTP request with the headers given as they are (fetch will not send another Host). */
function raw(
  method: string,
  path: string,
  headers: Record<string, string>,
  port?: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: port ?? currentPort, method, path, headers }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += String(c)));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end(method === 'POST' ? JSON.stringify({ queue: 'q', all: true }) : undefined);
  });
}
let currentPort = '';

/** Polls the dashboard's JSON until `ok` holds: the page is fed the same state every refresh. */
async function until<T>(read: () => Promise<T>, ok: (v: T) => boolean, what = 'the dashboard to show it'): Promise<T> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const v = await read();
    if (ok(v)) return v;
    if (Date.now() > deadline)
      throw new Error(`waited 30 s for ${what}; last seen: ${JSON.stringify(v).slice(0, 500)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

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
    currentPort = new URL(d.url).port;
  });
  after(async () => {
    await d?.close();
    await fleet?.close();
  });

  const port = () => currentPort;
  /** A request as a script with the token would make it (the header; the page itself sends the cookie). */
  const get = (path: string, init: RequestInit = {}) =>
    fetch(new URL(path, d.url), { ...init, headers: { 'x-postage-token': d.token, ...init.headers } });
  const state = async () =>
    (await get('/api/state')).json() as Promise<{
      components: Array<{ fingerprint: { name: string }; up: boolean }>;
      queues: Array<{ name: string; messages: number | null }>;
      errorQueues: string[];
    }>;

  it('serves the page on loopback with the token in its address, which it turns into a cookie', async () => {
    expect(d.url).to.match(/^http:\/\/127\.0\.0\.1:\d+\/\?token=[\w-]{20,}$/);
    const first = await fetch(d.url, { redirect: 'manual' });
    expect(first.status).to.equal(303);
    expect(first.headers.get('location')).to.equal('/');
    const cookie = first.headers.get('set-cookie')!;
    expect(cookie).to.match(/^postage-dashboard-\d+=[\w-]+; HttpOnly; SameSite=Strict; Path=\/$/);
    const page = await fetch(new URL('/', d.url), { headers: { cookie: cookie.split(';')[0] } });
    expect(page.status).to.equal(200);
    expect(page.headers.get('content-type')).to.contain('text/html');
    expect(await page.text()).to.contain('<title>postage-ts dashboard</title>');
    const read = await fetch(new URL('/api/state', d.url), { headers: { cookie: cookie.split(';')[0] } });
    expect(read.status).to.equal(200);
  });

  it('refuses every request without the token, reads and the event stream included, in one line', async () => {
    const paths = [
      '/',
      '/api/state',
      '/api/events',
      '/api/messages',
      '/api/graph.svg',
      '/api/conversation?id=x',
      `/api/errors?queue=${fleet.errorQueue}`,
      `/api/errors/message?queue=${fleet.errorQueue}&id=x`,
    ];
    for (const path of paths) {
      const variants: Array<Record<string, string>> = [
        {},
        { 'x-postage-token': 'guess' },
        { cookie: `postage-dashboard-${port()}=guess` },
      ];
      for (const headers of variants) {
        const r = await fetch(new URL(path, d.url), { headers });
        expect(r.status, `${path} with ${JSON.stringify(headers)}`).to.equal(403);
        const { error } = (await r.json()) as { error: string };
        expect(error).to.contain('needs the token').and.not.contain('\n');
      }
    }
    const wrongInQuery = await fetch(new URL('/?token=guess', d.url), { redirect: 'manual' });
    expect(wrongInQuery.status).to.equal(403);
    expect(wrongInQuery.headers.get('set-cookie')).to.equal(null);
  });

  it('refuses a Host it does not answer to (a page rebinding its DNS name here), and a POST from another origin', async () => {
    for (const host of [`evil.example:${port()}`, 'evil.example', `127.0.0.1.evil.example:${port()}`]) {
      const r = await raw('GET', '/api/state', { host, 'x-postage-token': d.token });
      expect(r.status, host).to.equal(421);
      expect(r.body)
        .to.contain(`does not answer to the host '${host.replace(/:\d+$/, '')}'`)
        .and.contain('--allow-host NAME');
    }
    for (const host of [`localhost:${port()}`, `127.0.0.1:${port()}`, `[::1]:${port()}`]) {
      const r = await raw('GET', '/api/state', { host, 'x-postage-token': d.token });
      expect(r.status, host).to.equal(200);
    }
    const foreign = await raw('POST', '/api/errors/purge', {
      host: `127.0.0.1:${port()}`,
      origin: 'http://evil.example',
      'x-postage-token': d.token,
      'content-type': 'application/json',
    });
    expect(foreign.status).to.equal(403);
    expect(foreign.body).to.contain('a request from http://evil.example may not change state here');
    // A name given with allowHosts is answered; others still are not.
    const named = await startDashboard({ url, refreshMs: 500, allowHosts: ['dash.test'] });
    try {
      const p = new URL(named.url).port;
      const ok = await raw('GET', '/api/state', { host: `dash.test:${p}`, 'x-postage-token': named.token }, p);
      expect(ok.status).to.equal(200);
      const other = await raw('GET', '/api/state', { host: `dash2.test:${p}`, 'x-postage-token': named.token }, p);
      expect(other.status).to.equal(421);
    } finally {
      await named.close();
    }
    const open = await postage(['dashboard', '--host', '0.0.0.0', '--port', '0'], url);
    expect(open.code).to.equal(2);
    expect(open.stderr.trim()).to.equal(
      'postage: --host 0.0.0.0 listens on every interface but answers only to localhost: ' +
        'name the host others reach it by with --allow-host NAME',
    );
  });

  it('shows the components that answer, with the error queue they report, and counts failures there', async () => {
    const s = await until(state, (v) => v.components.length === 2);
    expect(s.components.map((c) => c.fingerprint.name).sort()).to.deep.equal(['invoices', 'orders']);
    expect(s.errorQueues).to.deep.equal([fleet.errorQueue]);
    await fleet.order(3);
    await until(state, (v) => v.queues.find((q) => q.name === fleet.errorQueue)?.messages === 3);
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
    const listed = (await (await get(`/api/errors?queue=${fleet.errorQueue}`)).json()) as {
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
    await until(state, (v) => v.queues.find((q) => q.name === fleet.errorQueue)?.messages === 0);
    fleet.broken = true;
  });

  it('draws the topology, and a conversation as a sequence diagram', async () => {
    const svg = await (await get('/api/graph.svg')).text();
    expect(svg).to.match(/^<svg /);
    expect(svg)
      .to.contain('generic-application-exchange')
      .and.contain('orders (')
      .and.contain('command/order')
      .and.contain(`errors: ${fleet.errorQueue}`);
    const seen = await until(
      async () =>
        (await (await get('/api/messages')).json()) as Array<{
          conversationId: string;
          what: string;
          from: string;
          to: string[];
        }>,
      (v) => v.some((m) => m.what === 'command/order'),
    );
    const order = seen.find((m) => m.what === 'command/order')!;
    expect(order.from).to.equal('shop');
    expect(order.to).to.deep.equal(['orders']);
    const conversation = (await (await get(`/api/conversation?id=${order.conversationId}`)).json()) as {
      svg: string;
      messages: unknown[];
    };
    expect(conversation.messages.length).to.be.greaterThan(0);
    expect(conversation.svg).to.contain('class="message"').and.contain('>shop<').and.contain('>orders<');
  });

  it('postage graph prints the same topology as mermaid, dot or svg', async () => {
    const mermaid = await postage(['graph'], url);
    expect(mermaid.code, mermaid.stderr).to.equal(0);
    expect(mermaid.stdout)
      .to.match(/^flowchart LR/)
      .and.contain('"orders (')
      .and.contain('|"orders"|');
    const dot = await postage(['graph', '--format', 'dot'], url);
    expect(dot.stdout).to.match(/^digraph postage \{/);
    const bad = await postage(['graph', '--format', 'png'], url);
    expect(bad.code).to.equal(2);
    expect(bad.stderr).to.contain("--format must be mermaid, dot or svg, not 'png'");
  });

  it('postage errors list reads the error queues the running components report', async () => {
    await fleet.order(2);
    await until(state, (v) => v.queues.find((q) => q.name === fleet.errorQueue)?.messages === 2);
    const r = await postage(['errors', 'list', '--group', '--json'], url);
    expect(r.code, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout)).to.deep.equal([
      { queue: fleet.errorQueue, errorName: 'TypeError', messageName: 'order', count: 2 },
    ]);
  });

  it('marks a component down once it stops answering, and keeps it on the page', async () => {
    await fleet.stopInvoices();
    const s = await until(state, (v) => v.components.some((c) => c.fingerprint.name === 'invoices' && !c.up));
    expect(s.components.find((c) => c.fingerprint.name === 'orders')!.up).to.equal(true);
  });
});

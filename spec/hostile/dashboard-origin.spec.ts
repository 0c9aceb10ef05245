/**
 * Hostile: a page served on another port of localhost (any local dev server, or one a dependency starts) makes a
 * browser that opened the dashboard POST a purge to it. The dashboard's cookie is `SameSite=Strict`, but
 * `localhost:3000` and `localhost:PORT` are the same site (a site ignores the port), so the browser sends the cookie;
 * the request names its `Origin`, which is not the dashboard's own and must be refused (403) before any purge.
 */
import { expect } from 'chai';
import { request } from 'node:http';
import { startDashboard, type Dashboard } from '../../lib/index.js';
import { brokerUrl } from '../support/broker.js';

/** One HTTP request as a browser makes it, headers as given. */
function raw(
  port: string,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += String(c)));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, headers: res.headers }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('Hostile: the dashboard and a page on another port of localhost', function () {
  this.timeout(30_000);
  let d: Dashboard;

  before(async () => {
    d = await startDashboard({ url: await brokerUrl(), refreshMs: 1000 });
  });
  after(() => d?.close());

  it('refuses a state change whose Origin is localhost on another port, cookie and all', async () => {
    const port = new URL(d.url).port;
    // The browser opened the printed address: it holds the cookie now.
    const opened = await raw(port, 'GET', `/?token=${d.token}`, { host: `localhost:${port}` });
    expect(opened.status).to.equal(303);
    const cookie = String((opened.headers['set-cookie'] as string[])[0]).split(';')[0];
    // A fetch from http://localhost:3000 with credentials: a "simple" request (text/plain), so no preflight.
    const r = await raw(
      port,
      'POST',
      '/api/errors/purge',
      { host: `localhost:${port}`, origin: 'http://localhost:3000', cookie, 'content-type': 'text/plain' },
      JSON.stringify({ queue: 'orders.errors', all: true }),
    );
    expect(r.status, `answered ${r.status}: ${r.body}`).to.equal(403);
  });
});

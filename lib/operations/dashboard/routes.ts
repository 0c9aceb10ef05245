/** What the dashboard answers, request by request: the Host and token checks first, then the page and its API. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { BrokerError } from '../../errors.js';
import { DASHBOARD_PAGE } from '../dashboard-page.js';
import { type SeenMessage, sequenceSvg } from '../sequence.js';
import { toSvg, topologyGraph } from '../topology-graph.js';
import type { ErrorViews } from './error-views.js';
import type { StateEvents } from './events.js';
import { HttpError, json, misdirected, ownOrigin, readJson, send, type TokenCheck } from './http.js';
import type { DashboardState } from './page-state.js';

export interface Routes {
  readonly answersTo: ReadonlySet<string>;
  readonly token: TokenCheck;
  state(): DashboardState;
  seen(): readonly SeenMessage[];
  readonly events: StateEvents;
  readonly errors: ErrorViews;
}

/** The server's request handler. */
export function router(r: Routes): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    void route(r, req, res).catch((err: unknown) => {
      const e = err as Error & { status?: number };
      const status = err instanceof BrokerError && err.code === 'RESOURCE_LOCKED' ? 409 : (e.status ?? 500);
      if (!res.headersSent) json(res, status, { error: e.message });
      else res.end();
    });
  };
}

async function route(r: Routes, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const u = new URL(req.url ?? '/', 'http://dashboard');
  const path = u.pathname;
  const get = req.method === 'GET';
  const refusedHost = misdirected(req, r.answersTo);
  if (refusedHost) return json(res, 421, { error: refusedHost });
  // The page's address carries the token once: it becomes a cookie no script can read and no other site's request
  // carries, and the address bar loses it.
  if (get && path === '/' && r.token.same(u.searchParams.get('token') ?? undefined)) {
    res.writeHead(303, { location: '/', 'set-cookie': r.token.setCookie, 'cache-control': 'no-store' });
    return void res.end();
  }
  if (!r.token.ok(req))
    return json(res, 403, {
      error:
        'this needs the token: open the address postage dashboard printed (with ?token=…), ' +
        'or send the X-Postage-Token header',
    });
  if (get && path === '/') return send(res, 200, 'text/html; charset=utf-8', DASHBOARD_PAGE);
  if (get && path === '/api/state') return json(res, 200, r.state());
  if (get && path === '/api/events') return r.events.open(req, res, r.state());
  if (get && path === '/api/graph.svg')
    return send(res, 200, 'image/svg+xml', toSvg(topologyGraph(r.state().components)));
  if (get && path === '/api/conversation') {
    const id = u.searchParams.get('id') ?? '';
    const seen = r.seen();
    const messages = seen.filter((m) => m.conversationId === id || m.messageId === id);
    return json(res, 200, { id, messages, svg: sequenceSvg(messages) });
  }
  if (get && path === '/api/messages') return json(res, 200, r.seen().slice(-100).reverse());
  if (get && path === '/api/errors') return json(res, 200, await r.errors.list(u.searchParams.get('queue') ?? ''));
  if (get && path === '/api/errors/message') {
    const m = await r.errors.message(u.searchParams.get('queue') ?? '', u.searchParams.get('id') ?? '');
    return m ? json(res, 200, m) : json(res, 404, { error: 'no such message' });
  }
  if (req.method === 'POST' && (path === '/api/errors/replay' || path === '/api/errors/purge')) {
    // A page elsewhere that got this far (a proxy forwarding its Host) still cannot name itself as this one.
    const origin = req.headers.origin;
    // The whole origin, port included: a page on another port of localhost is the same site, and gets the cookie.
    if (origin !== undefined && !ownOrigin(origin, r.answersTo, req.socket.localPort ?? 0))
      throw new HttpError(403, `a request from ${origin} may not change state here`);
    const body = await readJson(req);
    return json(res, 200, await r.errors.act(path.endsWith('replay') ? 'replay' : 'purge', body));
  }
  return json(res, 404, { error: `no ${req.method} ${path}` });
}

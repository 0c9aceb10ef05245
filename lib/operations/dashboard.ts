import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import { JsonEncoder } from '../messaging/encoder.js';
import type { ProcessorDescription } from '../messaging/describe.js';
import { HEADERS } from '../messaging/delivery/context.js';
import { BrokerError } from '../errors.js';
import { openChannel } from '../transport/channels.js';
import { openConnection, type ConnectOptions } from '../transport/connection.js';
import { ComponentDirectory, componentId } from './directory.js';
import {
  ErrorQueue,
  groupFailed,
  printableHeaders,
  headerText as text,
  type FailedMessage,
  type FailedSelection,
} from './error-queue.js';
import { DASHBOARD_PAGE } from './dashboard-page.js';
import { sequenceSvg, type SeenMessage } from './sequence.js';
import { toSvg, topologyGraph } from './topology-graph.js';

export interface DashboardOptions extends ConnectOptions {
  /** @default 0: any free port */
  port?: number;
  /**
   * Where it listens. Anything but loopback lets others on the network reach it; every request still needs the token,
   * and a `Host` it answers to (see `allowHosts`). @default '127.0.0.1'
   */
  host?: string;
  /**
   * Host names it answers to besides its own address, `localhost` and the loopback addresses: the names others reach it
   * by when it listens on another interface (`0.0.0.0` answers to none of its own). A request for any other `Host`
   * is refused (421), which keeps a web page that rebinds its DNS name to this address from reading it.
   * @default []
   */
  allowHosts?: readonly string[];
  /**
   * The token every request must carry: the `X-Postage-Token` header, or the cookie the page's address (`?token=`)
   * sets. Made at random when left out.
   */
  token?: string;
  /** How often it asks components and queues. @default 1000 */
  refreshMs?: number;
}

export interface Dashboard {
  /** The page's address, with the token in it (open this one). */
  readonly url: string;
  readonly token: string;
  close(): Promise<void>;
}

interface ComponentState {
  description: ProcessorDescription;
  up: boolean;
  lastSeen: number;
}

interface QueueState {
  name: string;
  messages: number | null;
  consumers: number | null;
  /** Messages routed to it per second (counted from the dashboard's own copy of each binding). */
  inPerSecond: number;
  /** inPerSecond minus the depth's change per second. */
  outPerSecond: number;
  error: boolean;
}

const KEEP_SEEN = 2000;
/** The sender name of the dashboard's own describe questions, left out of the traffic it shows. */
const DASHBOARD_NAME = 'postage-dashboard';

function keyMatches(binding: string, key: string): boolean {
  if (binding === '' || binding === '#') return true;
  if (!binding.includes('*') && !binding.includes('#')) return binding === key;
  const b = binding.split('.');
  const k = key.split('.');
  const match = (i: number, j: number): boolean => {
    if (i === b.length) return j === k.length;
    if (b[i] === '#') return match(i + 1, j) || (j < k.length && match(i, j + 1));
    return j < k.length && (b[i] === '*' || b[i] === k[j]) && match(i + 1, j + 1);
  };
  return match(0, 0);
}

/** Addresses that mean every interface: no one reaches the dashboard by them, so they name no host it answers to. */
const WILDCARDS = new Set(['0.0.0.0', '::', '']);

/** The host name of a `Host` header or an origin, without its port or an IPv6 address's brackets. */
function hostOf(value: string): string {
  let v = value.trim().toLowerCase();
  const scheme = v.indexOf('://');
  if (scheme !== -1) v = v.slice(scheme + 3).split('/')[0];
  if (v.startsWith('[')) return v.slice(1, v.indexOf(']'));
  return v.replace(/:\d+$/, '');
}

/**
 * Why a request is refused for its `Host`, or undefined: a name the dashboard does not answer to is what a page that
 * rebinds its own DNS name to this address sends.
 */
/** Whether an `Origin` header names this dashboard itself: http, a host it answers to, and its own port. */
function ownOrigin(origin: string, answersTo: ReadonlySet<string>, port: number): boolean {
  let u: URL;
  try {
    u = new URL(origin);
  } catch {
    return false;
  }
  return u.protocol === 'http:' && (u.port || '80') === String(port) && answersTo.has(hostOf(u.host));
}

function misdirected(req: { headers: { host?: string } }, answersTo: ReadonlySet<string>): string | undefined {
  const host = req.headers.host;
  if (host === undefined) return 'a request needs a Host header';
  if (answersTo.has(hostOf(host))) return undefined;
  return (
    `this dashboard does not answer to the host '${hostOf(host)}': ` +
    'use its own address or localhost, or start it with --allow-host NAME'
  );
}

/**
 * The live page: components as they come and go, queues with depth and
 * rates, error queues with replay and purge, the topology drawn, and a
 * conversation as a sequence diagram. Served by `node:http` with server-sent
 * events; static HTML, CSS and a small script, nothing to build.
 *
 * Queue depth and consumers come from passive declares: they need only the
 * rights a component has, and the management plugin is off on a stock
 * RabbitMQ. Rates in come from the dashboard's own queue, bound as every
 * component's queue is, so it counts what each queue is sent; rate out is
 * that less the depth's growth.
 */
export async function startDashboard(options: DashboardOptions = {}): Promise<Dashboard> {
  const token = options.token ?? randomBytes(18).toString('base64url');
  const refreshMs = options.refreshMs ?? 1000;
  const conn: ChannelModel = await openConnection({ connectionName: 'postage dashboard', ...options });
  const directory = await ComponentDirectory.open({
    ...options,
    fingerprint: { name: DASHBOARD_NAME, type: 'cli' },
    connection: conn,
    waitForBrokerMs: 0,
  }).catch(async (err: unknown) => {
    await conn.close().catch(() => undefined);
    throw err;
  });
  const decoder = new JsonEncoder();
  const components = new Map<string, ComponentState>();
  const queues = new Map<string, QueueState>();
  const seen: SeenMessage[] = [];
  const routedSince = new Map<string, number>();
  const clients = new Set<ServerResponse>();
  let closed = false;

  // The dashboard's own view of the traffic: one exclusive queue with a copy of every binding.
  const watch = await openChannel(conn);
  watch.on('error', () => undefined);
  const { queue: watchQueue } = await watch.assertQueue('', { exclusive: true, autoDelete: true });
  const watched = new Set<string>();
  // What the components last said, worked out once per refresh: every message seen is matched against the bindings.
  let bindings: Array<ProcessorDescription['bindings'][number] & { component: string }> = [];
  let errorQueues: string[] = [];
  await watch.consume(
    watchQueue,
    (m: ConsumeMessage | null) => {
      if (!m) return;
      const { exchange, routingKey } = m.fields;
      let body: { type?: string; name?: string; fingerprint?: { name?: string } } = {};
      try {
        body = decoder.decode(m.content) as typeof body;
      } catch {
        // Not an envelope: shown by where it went.
      }
      if (body.fingerprint?.name === DASHBOARD_NAME) return;
      const targets = bindings.filter((b) => b.exchange === exchange && keyMatches(b.key, routingKey));
      for (const q of new Set(targets.map((t) => t.queue))) routedSince.set(q, (routedSince.get(q) ?? 0) + 1);
      const headers = (m.properties.headers ?? {}) as Record<string, unknown>;
      seen.push({
        at: new Date().toISOString(),
        exchange,
        routingKey,
        messageId: text(m.properties.messageId),
        conversationId: text(headers[HEADERS.conversationId]) ?? text(m.properties.messageId),
        causationId: text(headers[HEADERS.causationId]),
        what: `${body.type ?? '?'}/${body.name ?? '?'}`,
        from: body.fingerprint?.name ?? '(unknown sender)',
        to: [...new Set(targets.map((t) => t.component))],
      });
      if (seen.length > KEEP_SEEN) seen.splice(0, seen.length - KEEP_SEEN);
    },
    { noAck: true },
  );

  let probe: Channel | undefined;
  const check = async (queue: string): Promise<{ messageCount: number; consumerCount: number } | undefined> => {
    try {
      if (!probe) {
        probe = await openChannel(conn);
        probe.on('error', () => undefined);
        probe.on('close', () => (probe = undefined));
      }
      return await probe.checkQueue(queue);
    } catch {
      // A queue that is gone closes the channel: the next check opens another.
      probe = undefined;
      return undefined;
    }
  };

  let lastTick = Date.now();
  const refresh = async () => {
    const answered = await directory.describeAll(Math.max(0.3, (refreshMs * 0.8) / 1000)).catch(() => []);
    const now = Date.now();
    for (const d of answered) components.set(componentId(d), { description: d, up: true, lastSeen: now });
    for (const c of components.values()) if (now - c.lastSeen > refreshMs * 2.5) c.up = false;
    bindings = [...components.values()].flatMap((c) =>
      c.description.bindings.map((b) => ({ ...b, component: c.description.fingerprint.name })),
    );
    errorQueues = [
      ...new Set(
        [...components.values()].map((c) => c.description.errorQueue).filter((q): q is string => typeof q === 'string'),
      ),
    ];
    for (const b of bindings) {
      const k = `${b.exchange}\u0000${b.key}`;
      if (watched.has(k) || b.exchange === '') continue;
      watched.add(k);
      await watch.bindQueue(watchQueue, b.exchange, b.key).catch(() => watched.delete(k));
    }
    const seconds = Math.max(0.001, (now - lastTick) / 1000);
    lastTick = now;
    const names = new Set([...bindings.map((b) => b.queue), ...errorQueues]);
    for (const name of names) {
      const r = await check(name);
      const before = queues.get(name);
      const routed = routedSince.get(name) ?? 0;
      routedSince.set(name, 0);
      const inPerSecond = routed / seconds;
      const grew = r && before?.messages != null ? (r.messageCount - before.messages) / seconds : 0;
      queues.set(name, {
        name,
        messages: r?.messageCount ?? null,
        consumers: r?.consumerCount ?? null,
        inPerSecond,
        outPerSecond: Math.max(0, inPerSecond - grew),
        error: errorQueues.includes(name),
      });
    }
    const event = `event: state\ndata: ${JSON.stringify(state())}\n\n`;
    for (const c of clients) c.write(event);
  };

  const state = () => ({
    components: [...components.values()].map((c) => ({ ...c.description, id: componentId(c.description), up: c.up })),
    queues: [...queues.values()].sort((a, b) => Number(a.error) - Number(b.error) || a.name.localeCompare(b.name)),
    errorQueues,
    seen: seen.length,
  });

  let timer: NodeJS.Timeout | undefined;
  let running = Promise.resolve();
  const loop = () => {
    running = refresh()
      .catch(() => undefined)
      .finally(() => {
        if (!closed) timer = setTimeout(loop, refreshMs);
      });
  };
  loop();
  await running;

  const summary = (m: FailedMessage) => ({
    id: m.id,
    // A header that is not a date is shown as it is.
    failedAt: m.failedAt ?? text(m.headers['x-failed-at']),
    message: `${m.messageType ?? '?'}/${m.messageName ?? '?'}`,
    origin: `${m.originalExchange || '(default)'}/${m.originalRoutingKey}`,
    errorName: m.errorName,
    errorMessage: m.errorMessage,
    attempts: m.attempts,
    replayed: m.replayed,
  });
  const whole = (m: FailedMessage) => ({
    ...summary(m),
    headers: printableHeaders(m.headers),
    validationIssues: m.validationIssues,
    envelope: m.envelope,
  });
  const withQueue = async <T>(name: string, work: (q: ErrorQueue) => Promise<T>): Promise<T> => {
    if (!errorQueues.includes(name))
      throw Object.assign(new Error(`'${name}' is not an error queue a running component reports`), { status: 404 });
    const q = await ErrorQueue.open(name, { connection: conn });
    return work(q);
  };
  const same = (given: string | undefined) => {
    const a = Buffer.from(given ?? '');
    const want = Buffer.from(token);
    return a.length === want.length && timingSafeEqual(a, want);
  };
  // One cookie per port: browsers send a host's cookies to every port on it, and two dashboards must not mix theirs.
  let cookieName = 'postage-dashboard';
  const cookieOf = (req: IncomingMessage) =>
    String(req.headers.cookie ?? '')
      .split(';')
      .map((c) => c.trim().split('='))
      .find(([k]) => k === cookieName)?.[1];
  const tokenOk = (req: IncomingMessage) => same(String(req.headers['x-postage-token'] ?? '')) || same(cookieOf(req));
  const readJson = async (req: IncomingMessage): Promise<Record<string, unknown>> => {
    let raw = '';
    for await (const chunk of req) {
      raw += String(chunk);
      if (raw.length > 1_000_000) throw Object.assign(new Error('request too large'), { status: 413 });
    }
    try {
      const v: unknown = JSON.parse(raw || '{}');
      if (typeof v === 'object' && v !== null) return v as Record<string, unknown>;
    } catch {
      // Answered below.
    }
    throw Object.assign(new Error('the body must be a JSON object'), { status: 400 });
  };
  const selectionOf = (b: Record<string, unknown>): FailedSelection => {
    const sel: FailedSelection = { all: b['all'] === true };
    if (Array.isArray(b['ids'])) sel.ids = b['ids'].map(String);
    if (typeof b['errorName'] === 'string') sel.errorName = b['errorName'];
    if (typeof b['messageName'] === 'string') sel.messageName = b['messageName'];
    return sel;
  };

  const send = (res: ServerResponse, status: number, type: string, body: string) => {
    res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
    res.end(body);
  };
  const json = (res: ServerResponse, status: number, v: unknown) =>
    send(res, status, 'application/json', JSON.stringify(v));

  const server = createServer((req, res) => {
    void (async () => {
      const u = new URL(req.url ?? '/', 'http://dashboard');
      const path = u.pathname;
      const refusedHost = misdirected(req, answersTo);
      if (refusedHost) return json(res, 421, { error: refusedHost });
      // The page's address carries the token once: it becomes a cookie no script can read and no other site's request
      // carries, and the address bar loses it.
      if (req.method === 'GET' && path === '/' && same(u.searchParams.get('token') ?? undefined)) {
        res.writeHead(303, {
          location: '/',
          'set-cookie': `${cookieName}=${token}; HttpOnly; SameSite=Strict; Path=/`,
          'cache-control': 'no-store',
        });
        return res.end();
      }
      if (!tokenOk(req))
        return json(res, 403, {
          error:
            'this needs the token: open the address postage dashboard printed (with ?token=…), ' +
            'or send the X-Postage-Token header',
        });
      if (req.method === 'GET' && path === '/') return send(res, 200, 'text/html; charset=utf-8', DASHBOARD_PAGE);
      if (req.method === 'GET' && path === '/api/state') return json(res, 200, state());
      if (req.method === 'GET' && path === '/api/events') {
        res.writeHead(200, {
          'content-type': 'text/event-stream',
          'cache-control': 'no-store',
          connection: 'keep-alive',
        });
        res.write(`event: state\ndata: ${JSON.stringify(state())}\n\n`);
        clients.add(res);
        req.on('close', () => clients.delete(res));
        return;
      }
      if (req.method === 'GET' && path === '/api/graph.svg')
        return send(res, 200, 'image/svg+xml', toSvg(topologyGraph(state().components)));
      if (req.method === 'GET' && path === '/api/conversation') {
        const id = u.searchParams.get('id') ?? '';
        const messages = seen.filter((m) => m.conversationId === id || m.messageId === id);
        return json(res, 200, { id, messages, svg: sequenceSvg(messages) });
      }
      if (req.method === 'GET' && path === '/api/messages') return json(res, 200, seen.slice(-100).reverse());
      if (req.method === 'GET' && path === '/api/errors') {
        const name = u.searchParams.get('queue') ?? '';
        const { messages: list, locked } = await withQueue(name, async (q) => q.inspect());
        return json(res, 200, {
          queue: name,
          // Another tool is working on the queue: what it holds is not in the list.
          locked,
          count: list.length,
          groups: groupFailed(list),
          messages: list.map(summary),
        });
      }
      if (req.method === 'GET' && path === '/api/errors/message') {
        const name = u.searchParams.get('queue') ?? '';
        const id = u.searchParams.get('id') ?? '';
        const m = (await withQueue(name, (q) => q.inspect())).messages.find((x) => x.id === id);
        return m ? json(res, 200, whole(m)) : json(res, 404, { error: 'no such message' });
      }
      if (req.method === 'POST' && (path === '/api/errors/replay' || path === '/api/errors/purge')) {
        // A page elsewhere that got this far (a proxy forwarding its Host) still cannot name itself as this one.
        const origin = req.headers.origin;
        // The whole origin, port included: a page on another port of localhost is the same site, and gets the cookie.
        if (origin !== undefined && !ownOrigin(origin, answersTo, (server.address() as AddressInfo).port))
          return json(res, 403, { error: `a request from ${origin} may not change state here` });
        const body = await readJson(req);
        const sel = selectionOf(body);
        if (!sel.all && !sel.ids?.length && sel.errorName === undefined && sel.messageName === undefined)
          return json(res, 400, { error: 'say which messages: ids, all, errorName or messageName' });
        const name = String(body['queue'] ?? '');
        if (path.endsWith('replay')) {
          const r = await withQueue(name, (q) => q.replay(sel));
          return json(res, 200, {
            replayed: r.replayed.map((m) => m.id),
            unroutable: r.unroutable.map((m) => m.id),
            refused: r.refused.map(({ message, reason }) => ({ id: message.id, reason })),
            notTaken: r.notTaken,
          });
        }
        const gone = await withQueue(name, (q) => q.purge(sel));
        return json(res, 200, { purged: gone.map((m) => m.id) });
      }
      return json(res, 404, { error: `no ${req.method} ${path}` });
    })().catch((err: unknown) => {
      const e = err as Error & { status?: number };
      const status = err instanceof BrokerError && err.code === 'RESOURCE_LOCKED' ? 409 : (e.status ?? 500);
      if (!res.headersSent) json(res, status, { error: e.message });
      else res.end();
    });
  });
  const host = options.host ?? '127.0.0.1';
  const answersTo = new Set(
    ['localhost', '127.0.0.1', '::1', ...(WILDCARDS.has(host) ? [] : [host]), ...(options.allowHosts ?? [])].map((h) =>
      h.toLowerCase().replace(/^\[(.*)\]$/, '$1'),
    ),
  );
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  cookieName = `postage-dashboard-${port}`;
  const shownHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  return {
    url: `http://${shownHost}:${port}/?token=${token}`,
    token,
    async close() {
      closed = true;
      clearTimeout(timer);
      await running;
      for (const c of clients) c.end();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await directory.close().catch(() => undefined);
      await conn.close().catch(() => undefined);
    },
  };
}

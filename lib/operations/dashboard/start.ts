import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ChannelModel } from 'amqplib';
import { type BrokerOptions, openConnection } from '../../transport/connection.js';
import { ErrorViews } from './error-views.js';
import { StateEvents } from './events.js';
import { answeringTo, TokenCheck } from './http.js';
import { router } from './routes.js';
import { DASHBOARD_NAME, StateGatherer } from './page-state.js';
import { ComponentDirectory } from '../directory.js';

export interface DashboardOptions extends BrokerOptions {
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

/**
 * The live page: components as they come and go, queues with depth and
 * rates, error queues with replay and purge, the topology drawn, and a
 * conversation as a sequence diagram. Served by `node:http` with server-sent
 * events; static HTML, CSS and a small script, nothing to build.
 *
 * Its parts, each in lib/operations/dashboard/: what it shows, gathered (state.ts); the live feed (events.ts); the
 * error queues' views and actions (error-views.ts); which requests it answers and how (http.ts, routes.ts).
 */
export async function startDashboard(options: DashboardOptions = {}): Promise<Dashboard> {
  const token = new TokenCheck(options.token ?? randomBytes(18).toString('base64url'));
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
  const events = new StateEvents();
  const gatherer = await StateGatherer.start(conn, directory, options.refreshMs ?? 1000, (s) => events.broadcast(s));
  const host = options.host ?? '127.0.0.1';
  const server = createServer(
    router({
      answersTo: answeringTo(host, options.allowHosts ?? []),
      token,
      state: () => gatherer.state(),
      seen: () => gatherer.seen,
      events,
      errors: new ErrorViews(conn, () => gatherer.errorQueues),
    }),
  );
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  token.cookieName = `postage-dashboard-${port}`;
  const shownHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  return {
    url: `http://${shownHost}:${port}/?token=${token.token}`,
    token: token.token,
    async close() {
      await gatherer.close();
      events.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await directory.close().catch(() => undefined);
      await conn.close().catch(() => undefined);
    },
  };
}

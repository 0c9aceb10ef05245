import os from 'node:os';
import amqp, { type ChannelModel } from 'amqplib';
import { brokerUrls, checkBrokerUrls, config, DEFAULTS, redactUrl, type Hup } from '../config.js';
import { BrokerError, ConfigError } from '../errors.js';
import { tlsFailure, tlsSocketOptions, type TlsOptions } from './tls.js';
import { rootLogger, type Logger } from '../log.js';
import { coalesceWrites, takeHandshakeRefusal, watchHandshakes } from './amqplib-adapter.js';

/**
 * How a component reaches its broker (address, credentials, TLS, timeouts); every field falls back to `POSTAGE_*`.
 * What `connect()` takes on top of it is `ConnectionOptions`.
 */
export interface BrokerOptions {
  /** Host, user, password (and port), as in Postage. */
  hup?: Partial<Hup>;
  vhost?: string;
  /** A full amqp:// URL (or several, comma separated); overrides hup and vhost. */
  url?: string;
  /** Shown to operators as the connection's name (`rabbitmqctl list_connections client_properties`). */
  connectionName?: string;
  /** Heartbeat interval in seconds: a silent connection is noticed after two to three of them. @default 10 */
  heartbeat?: number;
  /** How long opening a connection (TCP, then the AMQP handshake) may take, in ms. @default 10000 */
  connectTimeoutMs?: number;
  /**
   * How long a component's first connection keeps trying while no broker
   * answers (`UNREACHABLE`: not started yet, as in a container started beside
   * its broker), with backoff and a warning per attempt, before it fails. A
   * broker that answers and refuses (credentials, vhost) fails at once. 0
   * fails at the first refusal (the `postage` CLI does).
   * @default 60000
   */
  waitForBrokerMs?: number;
  /**
   * TLS for `amqps://`: the CA that signed the broker's certificate, a client
   * certificate and key (and its passphrase), the name to check. Falls back to
   * `POSTAGE_TLS_CA`, `POSTAGE_TLS_CERT`, `POSTAGE_TLS_KEY`,
   * `POSTAGE_TLS_PASSPHRASE`, `POSTAGE_TLS_SERVERNAME`. Given, URLs built
   * from `POSTAGE_HOST` (or `hup`) use amqps:// (as `POSTAGE_TLS=true` does).
   */
  tls?: TlsOptions;
}

/**
 * The old name of {@link BrokerOptions}, kept for one release: it read too
 * much like `ConnectionOptions` (what `connect()` takes) for a different thing.
 * @deprecated Use `BrokerOptions`.
 */
export type ConnectOptions = BrokerOptions;

/** The URLs to try for these options, in order. @internal */
export function urlsFor(opts: BrokerOptions): string[] {
  if (opts.url !== undefined) {
    // A URL given in code needs no POSTAGE_* variable, nor that they be valid.
    checkBrokerUrls(opts.url, 'url');
    const urls = brokerUrls({ url: opts.url, vhost: '', user: '', password: '', hosts: [], port: 0 });
    if (opts.tls && urls.some((u) => !u.startsWith('amqps://')))
      throw new ConfigError('url', 'url: the tls option needs amqps:// URLs (TLS), not amqp://. Fix the url option.');
    return urls;
  }
  const cfg = config();
  const tls = cfg.tls || opts.tls !== undefined;
  // With TLS asked for in code, the port of POSTAGE_PORT still wins; unset, it is the TLS listener's.
  const port = opts.tls !== undefined && !cfg.tls && !process.env.POSTAGE_PORT ? DEFAULTS.tlsPort : cfg.port;
  if (!opts.hup && opts.vhost === undefined) return brokerUrls({ ...cfg, tls, port });
  const hup = opts.hup ?? {};
  return brokerUrls({
    tls,
    url: undefined,
    vhost: opts.vhost ?? cfg.vhost,
    user: hup.user ?? cfg.user,
    password: hup.password ?? cfg.password,
    hosts: hup.host ? hup.host.split(',').map((h) => h.trim()) : cfg.hosts,
    port: hup.port ?? port,
  });
}

/** Socket errors that mean nothing is listening where the URL points. */
const UNREACHABLE = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ECONNRESET',
  'EADDRNOTAVAIL',
]);

/**
 * Turns a failed connect into a `BrokerError` that says what to do, from the broker's reply code or the socket's error
 * code.
 */
function explain(err: unknown, url: string, timeoutMs: number | undefined): BrokerError {
  const safe = redactUrl(url);
  const where = new URL(url);
  const vhost = decodeURIComponent(where.pathname.slice(1)) || '/';
  const user = decodeURIComponent(where.username) || 'guest';
  const refusal = takeHandshakeRefusal();
  if (refusal?.replyCode === 403) {
    return new BrokerError(
      `RabbitMQ at ${safe} refused user '${user}' (${refusal.replyText}): check POSTAGE_USER / POSTAGE_PASSWORD (or ` +
        `the URL's credentials).`,
      'ACCESS_REFUSED',
      { amqpCode: 403 },
    );
  }
  if (refusal?.replyCode === 530) {
    return new BrokerError(
      `RabbitMQ at ${safe} refused virtual host '${vhost}' (${refusal.replyText}): create it and let the user in ` +
        `(rabbitmqctl add_vhost ${shellQuote(vhost)} && rabbitmqctl set_permissions -p ${shellQuote(vhost)} ` +
        `${shellQuote(user)} '.*' '.*' '.*'), or fix POSTAGE_VHOST.`,
      'VHOST_REFUSED',
      { amqpCode: 530 },
    );
  }
  if (refusal) {
    return new BrokerError(
      `RabbitMQ at ${safe} closed the connection while opening it: ${refusal.replyCode} ${refusal.replyText}`,
      'CONNECT_FAILED',
      { amqpCode: refusal.replyCode },
    );
  }
  const tls = url.startsWith('amqps://') ? tlsFailure(err, where.host) : undefined;
  if (tls) return tls;
  const code = (err as { code?: unknown })?.code;
  if (typeof code === 'string' && UNREACHABLE.has(code)) {
    return new BrokerError(
      `No RabbitMQ answers at ${safe} (${code}): start one (rabbitmq-server -detached) or fix POSTAGE_HOST / ` +
        'POSTAGE_PORT / POSTAGE_URL.',
      'UNREACHABLE',
      { cause: err },
    );
  }
  if (timeoutMs !== undefined) {
    return new BrokerError(
      `${where.host} accepted the connection but did not speak AMQP within ${timeoutMs / 1000} s: is it RabbitMQ's ` +
        'AMQP port (5672, or 5671 for amqps)? Fix POSTAGE_HOST / POSTAGE_PORT / POSTAGE_URL.',
      'UNREACHABLE',
      { cause: err },
    );
  }
  const msg = String((err as Error)?.message ?? err);
  return new BrokerError(
    `Cannot connect to RabbitMQ at ${safe}: ${msg.replace(url, safe)}. Is it RabbitMQ's AMQP port?`,
    'CONNECT_FAILED',
    { cause: err },
  );
}

function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * Opens one AMQP connection: TCP_NODELAY on (an RPC round trip on loopback
 * costs ~44 ms without it, ~0.3 ms with it), heartbeats, a readable name.
 * Tries each broker URL in turn and reports the last failure.
 */
export async function openConnection(opts: BrokerOptions, log?: Logger): Promise<ChannelModel> {
  const urls = spread(urlsFor(opts));
  const timeout = opts.connectTimeoutMs ?? 10_000;
  let last: BrokerError | undefined;
  for (const url of urls) {
    watchHandshakes();
    const started = Date.now();
    try {
      const secure = url.startsWith('amqps://')
        ? tlsSocketOptions(opts.tls, config(), new URL(url).hostname.replace(/^\[|\]$/g, ''))
        : undefined;
      const conn = await amqp.connect(withHeartbeat(url, opts.heartbeat ?? DEFAULTS.heartbeat), {
        ...secure,
        noDelay: true,
        timeout,
        clientProperties: { connection_name: opts.connectionName ?? `postage-ts@${os.hostname()}:${process.pid}` },
      });
      log?.debug({ broker: redactUrl(url) }, 'connected');
      // An unhandled 'error' event would crash the process; closing is reported by 'close'.
      conn.on('error', (err: Error) => log?.warn({ err: err.message }, 'connection error'));
      coalesceWrites(conn, log ?? rootLogger());
      return conn;
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      last = explain(err, url, Date.now() - started >= timeout ? timeout : undefined);
      log?.debug({ broker: redactUrl(url), err: last.message }, 'connect failed');
    }
  }
  throw last ?? new BrokerError('No broker URL configured', 'CONNECT_FAILED');
}

/** Connections opened so far in this process: where the next one starts in a list of cluster nodes. */
let opened = 0;

/**
 * The node list rotated to start at a different node for each connection
 * (offset by the pid, so replicas differ too): a cluster's clients spread over
 * its nodes instead of all landing on the first, and a reconnection after a
 * node went away starts at another one. The rest stay as fallbacks, in order.
 */
function spread(urls: string[]): string[] {
  if (urls.length < 2) return urls;
  const start = (process.pid + opened++) % urls.length;
  return [...urls.slice(start), ...urls.slice(0, start)];
}

function withHeartbeat(url: string, heartbeat: number): string {
  if (/[?&]heartbeat=/.test(url)) return url;
  return `${url}${url.includes('?') ? '&' : '?'}heartbeat=${heartbeat}`;
}

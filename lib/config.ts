import envVar from 'env-var';
import { ConfigError } from './errors.js';

/** Host, user, password (and port): Postage's "hup". */
export interface Hup {
  host: string;
  user: string;
  password: string;
  port?: number;
}

export interface PostageConfig {
  vhost: string;
  user: string;
  password: string;
  /** One or more broker hosts (a comma list in `POSTAGE_HOST`). */
  hosts: string[];
  port: number;
  /** `POSTAGE_URL` when set; it overrides the five fields above. */
  url: string | undefined;
  debugMode: boolean;
  logLevel: string;
  /** `POSTAGE_QUEUE_TYPE`: the type of durable named queues that do not choose one. */
  queueType: 'classic' | 'quorum' | 'stream' | undefined;
  /** `POSTAGE_TLS`: connect with amqps:// (port 5671 unless `POSTAGE_PORT` says otherwise). */
  tls: boolean;
  /** `POSTAGE_TLS_*`: files (and the key's passphrase) for amqps:// connections. */
  tlsFiles: { ca?: string; cert?: string; key?: string; passphrase?: string; servername?: string };
  /** `POSTAGE_ENCRYPTION_KEYS`: `id=base64key,…`, the first encrypting; unset, envelopes are plain JSON. */
  encryptionKeys: string | undefined;
  /** `POSTAGE_ENCRYPTION_ACCEPT_PLAINTEXT`: take unencrypted messages too. */
  encryptionAcceptPlaintext: boolean;
}

/** The defaults, written down once; `.env.example` and the README quote them. */
export const DEFAULTS = Object.freeze({
  vhost: '/',
  user: 'guest',
  password: 'guest',
  host: 'localhost',
  port: 5672,
  /** The port of `amqps://`, RabbitMQ's TLS listener. */
  tlsPort: 5671,
  debugMode: false,
  logLevel: 'info',
  rpcTimeout: 30,
  maxRetry: 4,
  prefetch: 1,
  maxBodyBytes: 16 * 1024 * 1024,
  /**
   * Seconds between heartbeats. A connection that goes silent (a network that
   * drops packets rather than refusing them) is noticed after two to three
   * intervals: 20 to 30 s. Lower costs a few bytes a second; a handler that
   * blocks the event loop longer than two intervals would get its connection closed.
   */
  heartbeat: 10,
  /** Milliseconds a send waits for its confirm (see ProducerOptions.confirmTimeoutMs). */
  confirmTimeoutMs: 15_000,
  /** Milliseconds between checks that a consumer's exchanges still exist (see ConsumerOptions.exchangeCheckMs). */
  exchangeCheckMs: 30_000,
});

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

type Env = Record<string, string | undefined>;

function first(env: Env, ...names: string[]): [string, string | undefined] {
  for (const n of names) if (env[n] !== undefined) return [n, env[n]];
  return [names[0], undefined];
}

/**
 * Reads every `POSTAGE_*` variable. A bad value throws a {@link ConfigError}
 * naming the variable and never quoting a password.
 */
export function loadConfig(rawEnv: Env = process.env): PostageConfig {
  // An empty variable (`POSTAGE_VHOST=` in a .env file) means "use the default".
  const env: Env = Object.fromEntries(Object.entries(rawEnv).filter(([, v]) => v !== ''));
  const from = envVar.from(env);
  const read = <T>(name: string, fn: () => T): T => {
    try {
      return fn();
    } catch (err) {
      // env-var's message quotes the value; that is fine for a port, not for a secret.
      const secret = /PASSWORD|URL|PASSPHRASE|KEYS/.test(name);
      const detail = secret ? 'has an invalid value' : (err as Error).message.replace(/^env-var: /, '');
      throw new ConfigError(name, `${name}: ${detail}. Fix or unset ${name} and start again.`);
    }
  };

  const [userVar] = first(env, 'POSTAGE_USER', 'POSTAGE_RMQ_USER');
  const [passVar] = first(env, 'POSTAGE_PASSWORD', 'POSTAGE_RMQ_PASSWORD');

  const vhost = read('POSTAGE_VHOST', () => from.get('POSTAGE_VHOST').default(DEFAULTS.vhost).asString());
  const user = read(userVar, () => from.get(userVar).default(DEFAULTS.user).asString());
  const password = read(passVar, () => from.get(passVar).default(DEFAULTS.password).asString());
  const hostList = read('POSTAGE_HOST', () => from.get('POSTAGE_HOST').default(DEFAULTS.host).asArray(','));
  const hosts = hostList.map((h) => h.trim()).filter((h) => h.length > 0);
  if (hosts.length === 0)
    throw new ConfigError(
      'POSTAGE_HOST',
      'POSTAGE_HOST: names no host. Set it to a host name or a comma list of them.',
    );
  const tls = read('POSTAGE_TLS', () => from.get('POSTAGE_TLS').default('false').asBoolStrict());
  const port = read('POSTAGE_PORT', () =>
    from
      .get('POSTAGE_PORT')
      .default(String(tls ? DEFAULTS.tlsPort : DEFAULTS.port))
      .asPortNumber(),
  );
  const tlsFiles = {
    ca: read('POSTAGE_TLS_CA', () => from.get('POSTAGE_TLS_CA').asString()),
    cert: read('POSTAGE_TLS_CERT', () => from.get('POSTAGE_TLS_CERT').asString()),
    key: read('POSTAGE_TLS_KEY', () => from.get('POSTAGE_TLS_KEY').asString()),
    passphrase: read('POSTAGE_TLS_PASSPHRASE', () => from.get('POSTAGE_TLS_PASSPHRASE').asString()),
    servername: read('POSTAGE_TLS_SERVERNAME', () => from.get('POSTAGE_TLS_SERVERNAME').asString()),
  };
  const url = read('POSTAGE_URL', () => from.get('POSTAGE_URL').asString());
  if (url !== undefined) checkBrokerUrls(url, 'POSTAGE_URL');
  for (const h of hosts) {
    if (/[:/@]/.test(h) && !/^\[[0-9a-f:.]+\]$/i.test(h)) {
      throw new ConfigError(
        'POSTAGE_HOST',
        `POSTAGE_HOST: '${h}' is not a host name: give the host alone (the port goes in POSTAGE_PORT, a whole ` +
          'address in POSTAGE_URL).',
      );
    }
  }
  const debugMode = read('POSTAGE_DEBUG_MODE', () => from.get('POSTAGE_DEBUG_MODE').default('false').asBoolStrict());
  const logLevel = read('POSTAGE_LOG_LEVEL', () =>
    from
      .get('POSTAGE_LOG_LEVEL')
      .default(DEFAULTS.logLevel)
      .asEnum([...LOG_LEVELS]),
  );
  const queueType = read('POSTAGE_QUEUE_TYPE', () =>
    from.get('POSTAGE_QUEUE_TYPE').asEnum(['classic', 'quorum', 'stream'] as const),
  );
  const encryptionKeys = read('POSTAGE_ENCRYPTION_KEYS', () => from.get('POSTAGE_ENCRYPTION_KEYS').asString());
  const encryptionAcceptPlaintext = read('POSTAGE_ENCRYPTION_ACCEPT_PLAINTEXT', () =>
    from.get('POSTAGE_ENCRYPTION_ACCEPT_PLAINTEXT').default('false').asBoolStrict(),
  );
  return {
    vhost,
    user,
    password,
    hosts,
    port,
    url,
    debugMode,
    logLevel,
    queueType,
    tls,
    tlsFiles,
    encryptionKeys,
    encryptionAcceptPlaintext,
  };
}

/**
 * Refuses broker URLs (one, or several separated by commas) that cannot be
 * used, naming where they came from (`POSTAGE_URL`, or the `url` option) and
 * never quoting a password.
 * @internal
 */
export function checkBrokerUrls(urls: string, source: 'POSTAGE_URL' | 'url'): void {
  const fix = source === 'url' ? 'Fix the url option.' : 'Fix or unset POSTAGE_URL.';
  const list = brokerUrls({ url: urls, vhost: '', user: '', password: '', hosts: [], port: 0 });
  if (list.length === 0) throw new ConfigError(source, `${source}: is empty. ${fix}`);
  for (const url of list) {
    if (!/^amqps?:\/\//.test(url))
      throw new ConfigError(source, `${source}: '${redactUrl(url)}' must start with amqp:// or amqps://. ${fix}`);
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new ConfigError(
        source,
        `${source}: '${redactUrl(url)}' is not a valid URL (a password with / # ? or % must be percent-encoded). ` +
          `${fix}`,
      );
    }
    if (u.hostname === '')
      throw new ConfigError(
        source,
        `${source}: '${redactUrl(url)}' names no host, e.g. amqp://user:password@host:5672/vhost. ${fix}`,
      );
    try {
      decodeURIComponent(u.username);
      decodeURIComponent(u.password);
      decodeURIComponent(u.pathname);
    } catch {
      throw new ConfigError(
        source,
        `${source}: '${redactUrl(url)}' has a % that starts no escape in its user, password or vhost (write % as ` +
          `%25). ${fix}`,
      );
    }
  }
}

/** Builds the amqp:// URLs to try, in order, for a config (one per host). */
export function brokerUrls(
  cfg: Pick<PostageConfig, 'vhost' | 'user' | 'password' | 'hosts' | 'port' | 'url'> & { tls?: boolean },
): string[] {
  // Several URLs are separated by commas; a comma inside one (a password) is not a separator.
  if (cfg.url) return cfg.url.split(/\s*,\s*(?=amqps?:\/\/)/).filter(Boolean);
  const auth = `${encodeURIComponent(cfg.user)}:${encodeURIComponent(cfg.password)}`;
  const vhost = encodeURIComponent(cfg.vhost);
  const scheme = cfg.tls ? 'amqps' : 'amqp';
  return cfg.hosts.map((h) => `${scheme}://${auth}@${h}:${cfg.port}/${vhost}`);
}

/** A URL with its password replaced, fit for logs and error messages. */
export function redactUrl(url: string): string {
  // Up to the last '@': a password may hold a raw '@' of its own.
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*:)[\s\S]*@(?=[^@]*$)/i, '$1***@');
}

/**
 * The configuration now: read from the environment each time a component is
 * created (it takes a fraction of a millisecond), never frozen at import, so a
 * CLI or a test may set `POSTAGE_*` after loading the library.
 */
export function config(): PostageConfig {
  return loadConfig();
}

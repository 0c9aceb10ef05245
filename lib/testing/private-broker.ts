/**
 * A private RabbitMQ node for fault specs: its own node name, ports, config,
 * data and log directories under a temp folder, so stopping or killing it
 * never touches the shared broker on 5672.
 */
import { execFile } from 'node:child_process';
import { chownSync, mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { processAlive } from './processes.js';

const exec = promisify(execFile);

/** More for a private node: files in its directory (certificates), and config lines that may name them. */
export interface BrokerExtras {
  files?: Record<string, string | Buffer>;
  config?: (dir: string) => string;
}

export class PrivateBroker {
  readonly node: string;
  readonly url: string;
  readonly #dir: string;
  readonly #env: NodeJS.ProcessEnv;
  /** The node's OS process, known once it has started. */
  #pid: number | undefined;

  private constructor(
    readonly port: number,
    extra: BrokerExtras = {},
  ) {
    this.node = `postage-spec-${port}@localhost`;
    this.url = `amqp://guest:guest@127.0.0.1:${port}/%2F`;
    this.#dir = mkdtempSync(join(tmpdir(), `postage-broker-${port}-`));
    mkdirSync(join(this.#dir, 'mnesia'));
    mkdirSync(join(this.#dir, 'log'));
    for (const [name, content] of Object.entries(extra.files ?? {})) writeFileSync(join(this.#dir, name), content);
    // Our own listener: the system config would bind the shared broker's port.
    writeFileSync(
      join(this.#dir, 'rabbitmq.conf'),
      `listeners.tcp.1 = 127.0.0.1:${port}\nloopback_users = none\n${extra.config?.(this.#dir) ?? ''}`,
    );
    // rabbitmq-server drops to the rabbitmq user when started as root: it must own its directory.
    if (userInfo().uid === 0) chownTree(this.#dir);
    this.#env = {
      ...process.env,
      RABBITMQ_NODENAME: this.node,
      RABBITMQ_NODE_PORT: String(port),
      RABBITMQ_DIST_PORT: String(port + 20000),
      RABBITMQ_CONFIG_FILE: join(this.#dir, 'rabbitmq'),
      RABBITMQ_MNESIA_BASE: join(this.#dir, 'mnesia'),
      RABBITMQ_FEATURE_FLAGS_FILE: join(this.#dir, 'feature_flags'),
      RABBITMQ_LOG_BASE: join(this.#dir, 'log'),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(this.#dir, 'enabled_plugins'),
      RABBITMQ_PID_FILE: join(this.#dir, 'pid'),
    };
  }

  /** Starts a node on `port` and resolves once it accepts AMQP connections. */
  static async start(port: number, extra?: BrokerExtras): Promise<PrivateBroker> {
    const b = new PrivateBroker(port, extra);
    await b.start();
    return b;
  }

  async start(): Promise<void> {
    // A node left over from a killed run would answer in this one's place.
    if (await portAnswers(this.port))
      throw new Error(
        `port ${this.port} is taken (a private node left over from a killed run?): stop it with \`rabbitmqctl -n ` +
          `${this.node} stop\` or kill it`,
      );
    try {
      await exec('rabbitmq-server', ['-detached'], { env: this.#env });
    } catch (err) {
      throw new Error(
        'cannot start a private RabbitMQ node (is rabbitmq-server installed? apt-get install rabbitmq-server): ' +
          `${(err as Error).message}`,
      );
    }
    await this.#ctl('await_startup', '--timeout', '60');
    this.#pid = Number((await this.#ctl('eval', 'list_to_integer(os:getpid()).')).trim());
  }

  /**
   * Starts `size` nodes on consecutive ports and joins them into one cluster
   * (the first node is the seed). Nodes share the rabbitmq user's Erlang cookie.
   */
  static async startCluster(size: number, firstPort: number, extra?: BrokerExtras): Promise<PrivateBroker[]> {
    const nodes = await Promise.all(Array.from({ length: size }, (_, i) => PrivateBroker.start(firstPort + i, extra)));
    try {
      for (const n of nodes.slice(1)) {
        await n.ctl('stop_app');
        await n.ctl('join_cluster', nodes[0].node);
        await n.ctl('start_app');
      }
    } catch (err) {
      await Promise.all(nodes.map((n) => n.destroy()));
      throw err;
    }
    return nodes;
  }

  /** Kills the node's Erlang VM with SIGKILL: a crash, not a shutdown (nothing is handed over first). */
  async kill(): Promise<void> {
    const pid = this.#pid;
    if (pid === undefined || !processAlive(pid)) return;
    process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 100 && processAlive(pid); i++) await new Promise((r) => setTimeout(r, 50));
    if (processAlive(pid)) throw new Error(`node ${this.node} (pid ${pid}) did not die`);
  }

  /** Stops the node (its data stays, so start() brings back durable queues). */
  async stop(): Promise<void> {
    await this.#ctl('stop');
  }

  /** Runs rabbitmqctl against this node. */
  ctl(...args: string[]): Promise<string> {
    return this.#ctl(...args);
  }

  async #ctl(...args: string[]): Promise<string> {
    // The node may take a moment to register with epmd after -detached returns.
    for (let attempt = 0; ; attempt++) {
      try {
        const { stdout } = await exec('rabbitmqctl', ['-n', this.node, ...args], { env: this.#env, timeout: 90_000 });
        return stdout;
      } catch (err) {
        if (attempt >= 30 || args[0] !== 'await_startup') throw err;
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  /** Stops the node if it runs and deletes its directory. */
  async destroy(): Promise<void> {
    // A clean stop first; a node whose cluster peers are gone can hang in it, so it is bounded, then killed.
    await Promise.race([this.stop().catch(() => undefined), new Promise((r) => setTimeout(r, 20_000).unref())]);
    await this.kill().catch(() => undefined);
    rmSync(this.#dir, { recursive: true, force: true });
  }
}

function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });
}

function chownTree(dir: string): void {
  // uid/gid of the rabbitmq user, from the passwd database.
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('rabbitmq:'));
  if (!line) return;
  const [, , uid, gid] = line.split(':');
  for (const p of [dir, ...readdirSync(dir).map((f) => join(dir, f))]) chownSync(p, Number(uid), Number(gid));
}

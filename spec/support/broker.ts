/**
 * Where the specs find RabbitMQ: the environment first (`POSTAGE_URL` /
 * `POSTAGE_*`), then a testcontainers RabbitMQ where a Docker engine answers,
 * otherwise one line that says how to start a broker. Never a silent skip.
 *
 * Every run works in a virtual host of its own, made with `rabbitmqctl` and
 * deleted when the run ends, so specs (and the demos they run) leave no
 * queue or exchange behind on the broker, and a run killed halfway is swept
 * up by the next one.
 */
import amqp from 'amqplib';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { brokerUrls, loadConfig, redactUrl } from '../../lib/config.js';
import { processAlive } from './processes.js';

const exec = promisify(execFile);
const VHOST_PREFIX = 'postage-spec.';

let resolved: Promise<string> | undefined;
let stopContainer: (() => Promise<void>) | undefined;
/** Runs rabbitmqctl on the broker the specs use. */
let ctl: (args: string[]) => Promise<string> = async (args) =>
  (await exec('rabbitmqctl', ['-q', ...args], { timeout: 60_000 })).stdout;
const made: string[] = [];

async function answers(url: string): Promise<boolean> {
  try {
    const c = await amqp.connect(url, { timeout: 3000 });
    await c.close();
    return true;
  } catch {
    return false;
  }
}

async function fromDocker(): Promise<string | undefined> {
  const tc = await import('testcontainers');
  try {
    await tc.getContainerRuntimeClient();
  } catch {
    return undefined;
  }
  const container = await new tc.GenericContainer('rabbitmq:3-alpine')
    .withExposedPorts(5672)
    .withWaitStrategy(tc.Wait.forLogMessage('Server startup complete'))
    .start();
  stopContainer = async () => {
    await container.stop();
  };
  ctl = async (args) => (await container.exec(['rabbitmqctl', '-q', ...args])).output;
  return `amqp://guest:guest@${container.getHost()}:${container.getMappedPort(5672)}`;
}

/** Deletes the vhosts of earlier runs whose process is gone (a run that was killed). */
async function sweep(): Promise<void> {
  const vhosts = (await ctl(['list_vhosts', 'name'])).split('\n').map((l) => l.trim());
  for (const v of vhosts) {
    const pid = Number(v.slice(VHOST_PREFIX.length).split('.')[0]);
    if (v.startsWith(VHOST_PREFIX) && Number.isInteger(pid) && !processAlive(pid))
      await ctl(['delete_vhost', v]).catch(() => undefined);
  }
}

/**
 * A virtual host of this run's own, with the user of `base` let in, and the
 * URL of `base` moved to it. Deleted by {@link releaseBroker}.
 */
export async function throwawayVhost(base: string, suffix: string): Promise<string> {
  const u = new URL(base);
  const name = `${VHOST_PREFIX}${process.pid}.${suffix}`;
  const user = decodeURIComponent(u.username) || 'guest';
  try {
    await ctl(['add_vhost', name]);
    made.push(name);
    await ctl(['set_permissions', '-p', name, user, '.*', '.*', '.*']);
  } catch (err) {
    throw new Error(
      `The specs make a virtual host of their own on the broker at ${redactUrl(base)} and could not ` +
        `(${(err as Error).message.split('\n')[0]}). ` +
        `Run them where \`rabbitmqctl\` reaches that broker (as root or the rabbitmq user), or create it yourself: ` +
        `rabbitmqctl add_vhost ${name} && rabbitmqctl set_permissions -p ${name} ${user} '.*' '.*' '.*'`,
    );
  }
  u.pathname = `/${encodeURIComponent(name)}`;
  return u.toString();
}

/** The URL of a broker (in this run's own vhost) that the specs may use; resolved once per run. */
export function brokerUrl(): Promise<string> {
  if (process.env.POSTAGE_SPEC_TIER === 'unit') {
    return Promise.reject(
      new Error(
        'spec/unit runs without a broker (npm run test:unit), and this spec asked for one: move it out of spec/unit.',
      ),
    );
  }
  resolved ??= (async () => {
    const [url] = brokerUrls(loadConfig());
    let base: string | undefined;
    if (await answers(url)) base = url;
    else base = await fromDocker();
    if (!base) {
      throw new Error(
        `No RabbitMQ answers at ${redactUrl(url)} and no Docker engine is reachable: start one with ` +
          `\`rabbitmq-server -detached\` (or set POSTAGE_URL) and run the tests again.`,
      );
    }
    await sweep().catch(() => undefined);
    return throwawayVhost(base, 'run');
  })();
  return resolved;
}

/** Deletes the vhosts this run made, and stops a broker it started. */
export async function releaseBroker(): Promise<void> {
  for (const v of made.splice(0)) await ctl(['delete_vhost', v]).catch(() => undefined);
  await stopContainer?.();
  stopContainer = undefined;
}

/**
 * Closes, from the broker's side (`rabbitmqctl close_connection`), every
 * connection whose client named it `name`: a connection lost as an operator
 * or a failing node would lose it. Resolves to how many it closed.
 */
export async function closeConnectionsNamed(name: string, reason = 'spec: closed by the broker'): Promise<number> {
  await brokerUrl();
  // The plain listing prints pids as close_connection takes them (the JSON one does not).
  const rows = (await ctl(['list_connections', '--no-table-headers', 'pid', 'client_properties'])).split('\n');
  const pids = rows
    .filter((r) => r.includes(`{"connection_name",${JSON.stringify(name)}}`))
    .map((r) => r.split('\t')[0]);
  for (const pid of pids) await ctl(['close_connection', pid, reason]);
  return pids.length;
}

/** What the broker holds for a queue, unacked deliveries included (which a queue.declare's count leaves out). */
export interface QueueCounts {
  consumers: number;
  /** Waiting to be delivered. */
  ready: number;
  /** Delivered to a consumer and not yet acked or rejected. */
  unacked: number;
}

/**
 * Reads a queue's counts from the broker itself (`rabbitmqctl list_queues`), in the vhost of `url` (the run's own
 * by default). Undefined when there is no such queue.
 */
export async function queueCounts(queue: string, url?: string): Promise<QueueCounts | undefined> {
  const vhost = decodeURIComponent(new URL(url ?? (await brokerUrl())).pathname.slice(1)) || '/';
  const out = await ctl([
    'list_queues',
    '-p',
    vhost,
    '--no-table-headers',
    'name',
    'consumers',
    'messages_ready',
    'messages_unacknowledged',
  ]);
  for (const row of out.split('\n')) {
    const [name, consumers, ready, unacked] = row.split('\t');
    if (name === queue) return { consumers: Number(consumers), ready: Number(ready), unacked: Number(unacked) };
  }
  return undefined;
}

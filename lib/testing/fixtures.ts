import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { brokerUrls, config, redactUrl } from '../config.js';
import type { DeliveryEvent, MessageProcessor } from '../receive/processor.js';

const exec = promisify(execFile);

/** A virtual host of a test's own: its URL, and how to remove it. */
export interface ThrowawayVhost {
  readonly name: string;
  readonly url: string;
  /** Deletes the vhost (and everything in it), and gives `POSTAGE_URL` back what it held. */
  release(): Promise<void>;
}

/**
 * Makes a virtual host for one test file on the broker `POSTAGE_*` names (or
 * `base`), lets its user in, and points `POSTAGE_URL` at it until
 * `release()`: components made meanwhile use it, and whatever they declare
 * goes with it. Uses `rabbitmqctl` (run the tests where it reaches the broker).
 *
 * @example
 * let vhost: ThrowawayVhost;
 * before(async () => (vhost = await throwawayVhost()));
 * after(() => vhost.release());
 */
export async function throwawayVhost(base: string = brokerUrls(config())[0]): Promise<ThrowawayVhost> {
  const u = new URL(base);
  const name = `postage-test.${process.pid}.${randomBytes(3).toString('hex')}`;
  const user = decodeURIComponent(u.username) || 'guest';
  const ctl = (...args: string[]) => exec('rabbitmqctl', ['-q', ...args], { timeout: 60_000 });
  try {
    await ctl('add_vhost', name);
    await ctl('set_permissions', '-p', name, user, '.*', '.*', '.*');
  } catch (err) {
    await ctl('delete_vhost', name).catch(() => undefined);
    throw new Error(
      `cannot make a throwaway vhost on ${redactUrl(base)} (${(err as Error).message.split('\n')[0]}): run the tests ` +
        'where rabbitmqctl reaches that broker (as root or the rabbitmq user)',
    );
  }
  u.pathname = `/${encodeURIComponent(name)}`;
  const url = u.toString();
  const before = process.env.POSTAGE_URL;
  process.env.POSTAGE_URL = url;
  return {
    name,
    url,
    release: async () => {
      if (process.env.POSTAGE_URL === url) {
        if (before === undefined) delete process.env.POSTAGE_URL;
        else process.env.POSTAGE_URL = before;
      }
      await ctl('delete_vhost', name).catch(() => undefined);
    },
  };
}

export interface ReceivedOptions {
  /** Give up after this long (ms), with an error naming what was awaited. @default 10000 */
  timeoutMs?: number;
  /** Only a delivery with this outcome counts (`'acked'`, `'dead-lettered'`…). */
  outcome?: DeliveryEvent['outcome'];
}

/**
 * Resolves when `processor` next settles a delivery of this type (and name),
 * with what became of it: an event, not polling. Start waiting before sending.
 *
 * @example
 * const handled = received(thumbnailer, 'command', 'resize');
 * await images.message_resize({ width: 640 });
 * expect((await handled).outcome).to.equal('acked');
 */
export function received(
  processor: MessageProcessor,
  type: string,
  name?: string,
  options: ReceivedOptions = {},
): Promise<DeliveryEvent> {
  const ms = options.timeoutMs ?? 10_000;
  return new Promise<DeliveryEvent>((resolve, reject) => {
    const stop = processor.observe((e) => {
      if (
        e.type !== type ||
        (name !== undefined && e.name !== name) ||
        (options.outcome !== undefined && e.outcome !== options.outcome)
      )
        return;
      clearTimeout(timer);
      stop();
      resolve(e);
    });
    const timer = setTimeout(() => {
      stop();
      reject(
        new Error(
          `${processor.name} received no ` +
            `${type}${name ? `/${name}` : ''}${options.outcome ? ` (${options.outcome})` : ''} within ${ms} ms`,
        ),
      );
    }, ms);
  });
}

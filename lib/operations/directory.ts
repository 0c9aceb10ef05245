import { config } from '../config.js';
import type { ProcessorDescription } from '../receive/description.js';
import { PresenceExchange } from '../receive/presence.js';
import { GenericProducer, type Producer, type ProducerOptions } from '../send/producer.js';

class Asker extends GenericProducer {
  static override eks = [[PresenceExchange, 'presence'] as const];
}

/**
 * The running components, as they describe themselves: every processor
 * (`GenericApplication` or plain, unless given `presence: false`) answers the
 * `describe` RPC sent to 'presence'. What `postage errors list`, `postage
 * graph` and the dashboard start from.
 */
export class ComponentDirectory {
  readonly #asker: Producer<Asker>;

  private constructor(asker: Producer<Asker>) {
    this.#asker = asker;
  }

  static async open(options: ProducerOptions = {}): Promise<ComponentDirectory> {
    return new ComponentDirectory(
      await Asker.create({ fingerprint: { name: 'postage-cli', type: 'cli' }, ...options }),
    );
  }

  /** Every description that arrives within `timeoutSeconds`, one per component. */
  async describeAll(timeoutSeconds = 2): Promise<ProcessorDescription[]> {
    const queue = (await this.#asker.rpc_describe({}, { _queue_only: true })) as string;
    const replies = await this.#asker.consumeRpc(queue, {
      resultLen: Number.MAX_SAFE_INTEGER,
      timeout: timeoutSeconds,
    });
    return replies.filter((r) => r.ok).map((r) => r.body.content.value as ProcessorDescription);
  }

  close(): Promise<void> {
    return this.#asker.close();
  }
}

/** A component's identity across descriptions: name, pid and host. */
export function componentId(d: ProcessorDescription): string {
  return `${d.fingerprint.name}@${d.fingerprint.host}:${d.fingerprint.pid}`;
}

/**
 * Why nobody may have answered on presence, and what to try: the second half of the CLI's "no component answered"
 * line. `vhost` is where the question went (by default the one the POSTAGE_* configuration names).
 */
export function whyNoneAnswered(vhost = configuredVhost()): string {
  return (
    'every processor answers unless started with presence: false, so none may be running, ' +
    `or they are on another broker or vhost (this asked vhost '${vhost}'). ` +
    "Try a longer --timeout, or the components' own POSTAGE_URL / POSTAGE_VHOST"
  );
}

/** The vhost the POSTAGE_* configuration connects to: POSTAGE_URL's path when it is set. */
function configuredVhost(): string {
  try {
    const c = config();
    if (c.url === undefined) return c.vhost;
    const path = new URL(c.url.split(',')[0].trim()).pathname.slice(1);
    return path === '' ? '/' : decodeURIComponent(path);
  } catch {
    return '?';
  }
}

import { PresenceExchange } from '../application/generic_application.js';
import type { ProcessorDescription } from '../messaging/describe.js';
import { GenericProducer, type Producer, type ProducerOptions } from '../messaging/producer.js';

class Asker extends GenericProducer {
  static override eks = [[PresenceExchange, 'presence'] as const];
}

/**
 * The running components, as they describe themselves: every
 * `GenericApplication` answers the `describe` RPC sent to 'presence'. What
 * `postage errors list`, `postage graph` and the dashboard start from.
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

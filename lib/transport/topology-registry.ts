import type { Channel, ChannelModel } from 'amqplib';
import { openChannel } from './channels.js';

/** One thing declared on the broker (an exchange, the error exchange, the delay levels…), under a key that names it. */
export interface Declaration {
  readonly key: string;
  declare(ch: Channel): Promise<void>;
  /** Declared again when the last declaration is older than this (ms): for what an operator may delete under us. */
  readonly maxAgeMs?: number;
}

/**
 * The topology on one connection, in one place: components add what they
 * declare (`ensure`), each thing is declared once per connection however many
 * components ask for it, and after a loss the connection's owner replays all
 * of it on the new connection (`replay`) before the components set themselves
 * up again. A component's own queues and bindings (server-named, exclusive)
 * stay with the component, which declares them again in its setup.
 */
export class TopologyRegistry {
  /** Everything ever ensured, in order: what a replay declares. */
  readonly #known = new Map<string, Declaration>();
  /** What is declared on the current connection, and when. */
  #done = new Map<string, { at: number; p: Promise<void> }>();
  #model: ChannelModel | undefined;

  /**
   * Declares `d` on `ch` unless it is declared on this connection already (and recently enough); `force` declares it
   * anew.
   */
  ensure(model: ChannelModel, ch: Channel, d: Declaration, force = false): Promise<void> {
    this.#known.set(d.key, d);
    if (model !== this.#model) {
      this.#model = model;
      this.#done = new Map();
    }
    const done = this.#done.get(d.key);
    if (done && !force && (d.maxAgeMs === undefined || Date.now() - done.at < d.maxAgeMs)) return done.p;
    const entry = { at: Date.now(), p: d.declare(ch) };
    this.#done.set(d.key, entry);
    entry.p.then(
      () => (entry.at = Date.now()),
      () => {
        if (this.#done.get(d.key) === entry) this.#done.delete(d.key);
      },
    );
    return entry.p;
  }

  /** How many things it knows (a spec reads it). */
  get size(): number {
    return this.#known.size;
  }

  /**
   * Declares everything known on a new connection, on a channel of its own
   * (a refusal closes that channel, not a component's). Throws the first
   * refusal: the owner reports it and tries again.
   */
  async replay(model: ChannelModel): Promise<void> {
    if (this.#known.size === 0) return;
    const ch = await openChannel(model);
    ch.on('error', () => undefined);
    try {
      for (const d of this.#known.values()) await this.ensure(model, ch, d);
    } finally {
      await ch.close().catch(() => undefined);
    }
  }
}

/** The registries of raw amqplib connections an application handed to several components: one each. */
const ofRaw = new WeakMap<ChannelModel, TopologyRegistry>();

/** The registry of a raw amqplib connection (shared by every component given it). */
export function registryOf(model: ChannelModel): TopologyRegistry {
  let r = ofRaw.get(model);
  if (!r) ofRaw.set(model, (r = new TopologyRegistry()));
  return r;
}

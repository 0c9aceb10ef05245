import type { Channel, ChannelModel } from 'amqplib';
import type { Logger } from '../log.js';
import { openChannel } from './channels.js';

/** What an {@link ExchangeWatch} looks at, and whom it tells. */
export interface ExchangeWatchOptions {
  /** How often (ms) the exchanges are checked. */
  readonly everyMs: number;
  /** The exchanges to check now (the default exchange and `amq.*` ones are skipped: nobody can delete them). */
  names(): Iterable<string>;
  /** The connection to check on now; none (reconnecting): this round is skipped. */
  model(): ChannelModel | undefined;
  /** Some exchanges are gone: declare and bind them again. A failure is logged, and the next round tries again. */
  missing(names: string[]): Promise<void>;
  readonly log: Logger;
}

/**
 * Checks a component's exchanges now and then with a passive declare. A
 * deleted exchange cancels no consumer and closes no channel: its bindings
 * just go with it, and sends to it are unroutable from then on, silently.
 * This is how the component learns of it. Each round uses a channel of its
 * own (a passive declare of a missing exchange closes its channel), and a
 * round never overlaps the last.
 * @internal
 */
export class ExchangeWatch {
  readonly #opts: ExchangeWatchOptions;
  #timer: NodeJS.Timeout | undefined;
  #stopped = true;

  constructor(opts: ExchangeWatchOptions) {
    this.#opts = opts;
  }

  start(): void {
    if (!this.#stopped || !(this.#opts.everyMs > 0)) return;
    this.#stopped = false;
    this.#schedule();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      void this.check().finally(() => this.#schedule());
    }, this.#opts.everyMs);
    // A watch never keeps a process alive by itself.
    this.#timer.unref();
  }

  /** One round: every exchange checked; those missing handed to `missing`. Resolves to their names. */
  async check(): Promise<string[]> {
    const model = this.#opts.model();
    if (!model || this.#stopped) return [];
    const names = [...new Set(this.#opts.names())].filter((n) => n !== '' && !n.startsWith('amq.'));
    const missing: string[] = [];
    let ch: Channel | undefined;
    try {
      for (const name of names) {
        if (this.#stopped) return [];
        ch ??= await open(model);
        try {
          await ch.checkExchange(name);
        } catch (err) {
          // 404 closes the channel: the next name gets a new one.
          ch = undefined;
          if (isNotFound(err)) missing.push(name);
          else throw err;
        }
      }
    } catch (err) {
      // The connection going (or a refusal other than "not found") ends this round; the next tries again.
      this.#opts.log.debug({ err: (err as Error).message }, 'exchange check skipped');
      return [];
    } finally {
      await ch?.close().catch(() => undefined);
    }
    if (missing.length === 0 || this.#stopped) return missing;
    this.#opts.log.warn(
      { exchanges: missing },
      `exchange${missing.length > 1 ? 's' : ''} ${missing.map((n) => `'${n}'`).join(', ')} deleted under this ` +
        'component (its bindings went with it); declaring and binding again',
    );
    try {
      await this.#opts.missing(missing);
    } catch (err) {
      this.#opts.log.warn({ err, exchanges: missing }, 'could not declare and bind again; the next check tries again');
    }
    return missing;
  }
}

async function open(model: ChannelModel): Promise<Channel> {
  const ch = await openChannel(model);
  ch.on('error', () => undefined);
  return ch;
}

function isNotFound(err: unknown): boolean {
  return (err as { code?: unknown }).code === 404 || /NOT_FOUND|404/.test(String((err as Error).message));
}

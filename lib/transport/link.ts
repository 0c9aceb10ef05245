import { EventEmitter } from 'node:events';
import type { ChannelModel } from 'amqplib';
import { BrokerError } from '../errors.js';
import type { Logger } from '../log.js';
import type { ConnectOptions } from './connection.js';
import { ManagedConnection, reopenSoon, type ConnectionEvent, type ConnectionEvents, type ReconnectOptions } from './managed.js';

/** What a component does on its link's connection. */
export interface LinkHooks {
  /** Opens the component's channels (and declares its topology) on a connection, first or restored. */
  open(model: ChannelModel): Promise<void>;
  /** The connection, or one of the component's channels, went away: forget the channels. */
  lost(): void;
  /** Whether the component has its channels (a reopen already happened). */
  isOpen(): boolean;
}

/**
 * The one owner of a component's connection and channels' life: connect (its
 * own connection, or a shared one), and after a loss reconnect, reopen and
 * restore through the component's {@link LinkHooks}; a channel the broker
 * closed alone is reopened on the same connection. Producer and consumer both
 * live on one, so they recover the same way and report the same events.
 * @internal
 */
export class Link {
  readonly #events = new EventEmitter();
  readonly #opts: ConnectOptions & { connection?: ChannelModel; reconnect?: ReconnectOptions };
  readonly #log: Logger;
  readonly #what: string;
  readonly #hooks: LinkHooks;
  #managed: ManagedConnection | undefined;
  #closed = false;

  constructor(opts: ConnectOptions & { connection?: ChannelModel; reconnect?: ReconnectOptions }, log: Logger, what: string, hooks: LinkHooks) {
    this.#opts = opts;
    this.#log = log;
    this.#what = what;
    this.#hooks = hooks;
  }

  /** The connection now: the shared one, or this component's own while it is up. */
  get model(): ChannelModel | undefined {
    return this.#opts.connection ?? this.#managed?.model;
  }

  /** Whether the connection is this component's own (it reconnects by itself). */
  get ownsConnection(): boolean {
    return this.#opts.connection === undefined;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Connects (the first time fails at once with a clear error), then opens the component's channels. */
  async connect(): Promise<void> {
    let model = this.#opts.connection;
    if (!model) {
      const managed = new ManagedConnection(this.#opts, this.#log);
      this.#managed = managed;
      model = await managed.connect();
      managed.serve(this.#events, () => this.#hooks.lost(), (m) => this.#hooks.open(m));
    }
    await this.#hooks.open(model);
  }

  /**
   * One of the component's channels closed without the component asking. A
   * lost connection closes its channels first, then itself, in the same turn:
   * by the next microtask it is known which this was, so one loss is reported
   * once (by the reconnection), and a channel the broker closed alone is
   * reported and reopened on the same connection.
   */
  channelLost(): void {
    if (this.#closed) return;
    this.#hooks.lost();
    const model = this.model;
    queueMicrotask(() => {
      if (this.#closed || !model || this.model !== model || (model.connection as { expectSocketClose?: boolean }).expectSocketClose) return;
      this.#events.emit('disconnected', new BrokerError(`the broker closed the ${this.#what} channel`, 'CHANNEL_CLOSED'));
      reopenSoon({
        model: () => this.model,
        settled: () => this.#hooks.isOpen() || this.#closed,
        restore: (m) => this.#hooks.open(m),
        events: this.#events,
        log: this.#log,
        what: this.#what,
      });
    });
  }

  on<E extends ConnectionEvent>(event: E, listener: (...args: ConnectionEvents[E]) => void): void {
    this.#events.on(event, listener as (...args: unknown[]) => void);
  }

  off<E extends ConnectionEvent>(event: E, listener: (...args: ConnectionEvents[E]) => void): void {
    this.#events.off(event, listener as (...args: unknown[]) => void);
  }

  /** Stops recovering, and closes the connection when it is this component's own. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#managed?.close();
  }
}

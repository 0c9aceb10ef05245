import { EventEmitter } from 'node:events';
import type { ChannelModel } from 'amqplib';
import { BrokerError } from '../errors.js';
import { expectsSocketClose } from './amqplib-adapter.js';
import type { Logger } from '../log.js';
import type { BrokerOptions } from './connection.js';
import {
  ManagedConnection,
  reopenSoon,
  type ConnectionEvent,
  type ConnectionEvents,
  type ReconnectOptions,
} from './managed.js';
import { Connection } from './shared.js';
import type { ConnectionStatus } from './status.js';
import { registryOf, type TopologyRegistry } from './topology-registry.js';

/**
 * What a component's `connection` option may be: a shared postage-ts connection (`connect()`), or a raw amqplib one
 * (the advanced case: its owner handles its loss).
 */
export type SharedConnection = Connection | ChannelModel;

/** What a component does on its link's connection. */
export interface LinkHooks {
  /** Opens the component's channels (and declares its topology) on a connection, first or restored. */
  open(model: ChannelModel): Promise<void>;
  /** The connection, or one of the component's channels, went away: forget the channels. */
  lost(): void;
  /** Whether the component has its channels (a reopen already happened). */
  isOpen(): boolean;
  /** Closes the component: its shared connection is closing. */
  close(): Promise<void>;
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
  readonly #opts: BrokerOptions & { reconnect?: ReconnectOptions };
  readonly #log: Logger;
  readonly #what: string;
  readonly #hooks: LinkHooks;
  /** A raw amqplib connection given by the application: it handles its loss. */
  readonly #raw: ChannelModel | undefined;
  /** A shared postage-ts connection: it reconnects, and runs this component's setup again. */
  readonly #shared: Connection | undefined;
  #detach: (() => void) | undefined;
  #managed: ManagedConnection | undefined;
  #closed = false;
  /**
   * The component's own trouble while its connection is fine (a consumer the broker cancelled): its status until it
   * has recovered, a shared connection's own status untouched.
   */
  #trouble: ConnectionStatus | undefined;

  constructor(
    opts: BrokerOptions & { connection?: SharedConnection; reconnect?: ReconnectOptions },
    log: Logger,
    what: string,
    hooks: LinkHooks,
  ) {
    const { connection, ...rest } = opts;
    this.#opts = rest;
    if (Connection.is(connection)) this.#shared = connection;
    else this.#raw = connection;
    this.#log = log;
    this.#what = what;
    this.#hooks = hooks;
  }

  /** The connection now: the shared one, or this component's own while it is up. */
  get model(): ChannelModel | undefined {
    return this.#raw ?? (this.#shared ? this.#shared.model : this.#managed?.model);
  }

  /** What is declared on the connection: its owner's registry (for a raw amqplib connection, one per connection). */
  get topology(): TopologyRegistry {
    if (this.#shared) return this.#shared.topology;
    if (this.#raw) return registryOf(this.#raw);
    return (this.#managed ??= new ManagedConnection(this.#opts, this.#log)).topology;
  }

  /** Whether the connection comes back by itself after a loss (this component's own, or a shared postage-ts one). */
  get recovers(): boolean {
    return this.#raw === undefined;
  }

  /** Where the connection stands (a raw amqplib one: ready while it is open). */
  get status(): ConnectionStatus {
    if (this.#closed) return { state: 'closed' };
    if (this.#trouble) return this.#trouble;
    if (this.#shared) return this.#shared.status;
    if (this.#raw) return { state: 'ready' };
    return this.#managed?.status ?? { state: 'connecting' };
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Connects (the first time fails at once with a clear error), then opens the
   * component's channels. A failure leaves nothing open: the component's own
   * connection is closed, and it does not reopen by itself.
   */
  async connect(): Promise<void> {
    try {
      let model = this.#raw;
      if (this.#shared) {
        // Reconnecting: this component is set up once the connection is back.
        if (this.#shared.status.state !== 'closed' && !this.#shared.model) {
          for await (const s of this.#shared.statusChanges()) if (s.state === 'ready' || s.state === 'closed') break;
        }
        model = this.#shared.model;
        if (!model || this.#shared.status.state === 'closed')
          throw new BrokerError('the shared connection is closed: connect() again', 'CLOSED');
        this.#detach = this.#shared.attach({
          setup: (m) => this.#hooks.open(m),
          lost: () => this.#hooks.lost(),
          close: () => this.#hooks.close(),
          events: this.#events,
        });
      } else if (!model) {
        const managed = (this.#managed ??= new ManagedConnection(this.#opts, this.#log));
        model = await managed.connect();
        managed.wireComponent(
          this.#events,
          () => this.#hooks.lost(),
          (m) => this.#hooks.open(m),
        );
      }
      await this.#hooks.open(model);
      this.#managed?.board.set({ state: 'ready' });
    } catch (err) {
      await this.close();
      throw err;
    }
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
      if (this.#closed || !model || this.model !== model || expectsSocketClose(model)) return;
      this.#events.emit(
        'disconnected',
        new BrokerError(`the broker closed the ${this.#what} channel`, 'CHANNEL_CLOSED'),
      );
      reopenSoon({
        model: () => this.model,
        recovered: () => this.#hooks.isOpen() || this.#closed,
        restore: (m) => this.#hooks.open(m),
        events: this.#events,
        log: this.#log,
        what: this.#what,
        backoff: this.reconnect,
      });
    });
  }

  /** The timing of every retry on this link: the shared connection's `reconnect` option, or the component's own. */
  get reconnect(): ReconnectOptions | undefined {
    return this.#shared?.reconnect ?? this.#opts.reconnect;
  }

  /**
   * The component is recovering from trouble of its own on a connection that is fine (attempt counts from 1): its
   * status says `reconnecting` with the error until {@link recovered}.
   */
  troubled(attempt: number, lastError: Error): void {
    if (!this.#closed) this.#trouble = { state: 'reconnecting', attempt, lastError };
  }

  /** The component's own trouble is over: its status is its connection's again. */
  recovered(): void {
    this.#trouble = undefined;
  }

  /** Tells the component's listeners of an event of its own (a consumer cancelled). */
  emit(event: string, ...args: unknown[]): void {
    this.#events.emit(event, ...args);
  }

  on<E extends ConnectionEvent>(event: E, listener: (...args: ConnectionEvents[E]) => void): void {
    this.#events.on(event, listener as (...args: unknown[]) => void);
  }

  off<E extends ConnectionEvent>(event: E, listener: (...args: ConnectionEvents[E]) => void): void {
    this.#events.off(event, listener as (...args: unknown[]) => void);
  }

  /**
   * Stops recovering, takes the component off a shared connection, and closes the connection when it is this
   * component's own.
   */
  async close(): Promise<void> {
    this.#closed = true;
    this.#detach?.();
    this.#detach = undefined;
    await this.#managed?.close();
  }
}

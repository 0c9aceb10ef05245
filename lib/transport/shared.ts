import { EventEmitter } from 'node:events';
import type { ChannelModel } from 'amqplib';
import { BrokerError } from '../errors.js';
import { asPino, componentLogger, type AnyLogger, type Logger } from '../log.js';
import type { BrokerOptions } from './connection.js';
import {
  ManagedConnection,
  restoreAndAnnounce,
  type ConnectionEvent,
  type ConnectionEvents,
  type ReconnectOptions,
} from './managed.js';
import type { ConnectionStatus } from './status.js';
import type { TopologyRegistry } from './topology-registry.js';

/** Marks a postage-ts connection across copies of the library (an ESM and a CommonJS build in one process). */
const BRAND = Symbol.for('postage-ts.Connection');

/** What `connect()` takes: the options a component takes to connect. */
export interface ConnectionOptions extends BrokerOptions {
  /** Reconnection timing after a loss. */
  reconnect?: ReconnectOptions;
  /** Logs the connection's life (pino, or any logger of its shape). @default the library's, named 'connection' */
  logger?: AnyLogger;
}

/** What a component puts on a shared connection: how to set itself up on it, forget it, and close. @internal */
export interface Attachment {
  /** Opens the component's channels and declares its topology: the first time, and after every loss. */
  setup(model: ChannelModel): Promise<void>;
  /** The connection went away: the component forgets its channels. */
  lost(): void;
  /** Closes the component (the connection is closing). */
  close(): Promise<void>;
  /** The component's own events ('disconnected', 'connected', 'blocked', 'restoreFailed'…). */
  readonly events: EventEmitter;
}

/**
 * A managed connection that many components share (`connect()`): it owns
 * reconnecting, and runs the `setup` of every component on it again after
 * each loss (rabbitmq-client's model). Closing it closes what is on it,
 * newest first, then the socket. `await using conn = await connect()` works.
 */
export class Connection {
  readonly #managed: ManagedConnection;
  readonly #log: Logger;
  readonly #events = new EventEmitter();
  /** In the order they came: set up again in that order, closed in the other. */
  readonly #attached = new Set<Attachment>();
  #closing: Promise<void> | undefined;

  /** Use {@link connect}. @internal */
  constructor(options: ConnectionOptions = {}) {
    this.#log = options.logger
      ? asPino(options.logger, { component: 'connection', componentName: options.connectionName ?? 'shared' })
      : componentLogger('connection', options.connectionName ?? 'shared');
    this.#managed = new ManagedConnection(
      { ...options, connectionName: options.connectionName ?? `postage-ts@${process.pid}` },
      this.#log,
    );
    Object.defineProperty(this, BRAND, { value: true });
    const m = this.#managed;
    m.on('disconnected', (err: Error) => {
      for (const a of this.#attached) {
        a.lost();
        a.events.emit('disconnected', err);
      }
      this.#events.emit('disconnected', err);
    });
    m.on('connected', (model: ChannelModel) => {
      const current = () => m.model === model && !m.closing;
      void (async () => {
        // What the components declared, once, on a channel of its own; then each component sets itself up again.
        const trying = { keepTrying: current, backoff: m.reconnect };
        const replayed = await restoreAndAnnounce(
          model,
          (x) => m.topology.replay(x),
          new EventEmitter().on('restoreFailed', (err: Error) => this.#events.emit('restoreFailed', err)),
          this.#log,
          trying,
        );
        if (!replayed) return;
        const done = await Promise.all(
          [...this.#attached].map((a) => restoreAndAnnounce(model, (x) => a.setup(x), a.events, this.#log, trying)),
        );
        if (done.every(Boolean) && current()) {
          m.board.set({ state: 'ready' });
          this.#events.emit('connected');
        }
      })();
    });
    for (const e of ['blocked', 'unblocked'] as const) {
      m.on(e, (...args: unknown[]) => {
        for (const a of this.#attached) a.events.emit(e, ...args);
        this.#events.emit(e, ...args);
      });
    }
  }

  /** Whether `v` is a postage-ts connection (of this copy of the library or another). */
  static is(v: unknown): v is Connection {
    return typeof v === 'object' && v !== null && (v as Record<symbol, unknown>)[BRAND] === true;
  }

  /** Opens the first connection; one that fails leaves nothing behind (no socket, no timer). @internal */
  async open(): Promise<this> {
    await this.#managed.connect();
    this.#managed.board.set({ state: 'ready' });
    return this;
  }

  /** Where the connection stands: connecting, ready, reconnecting (attempt, last error), blocked (reason), closed. */
  get status(): ConnectionStatus {
    return this.#managed.status;
  }

  /** Each status from now on, as it changes (`for await`); ends once the connection is closed. */
  statusChanges(): AsyncIterableIterator<ConnectionStatus> {
    return this.#managed.board.changes();
  }

  /**
   * What is declared on this connection (exchanges, error exchanges, delay levels), replayed after a loss. @internal
   */
  get topology(): TopologyRegistry {
    return this.#managed.topology;
  }

  /** The reconnection timing it was given: the components on it reopen their channels by it too. @internal */
  get reconnect(): ReconnectOptions | undefined {
    return this.#managed.reconnect;
  }

  /** The amqplib connection now (undefined while reconnecting): the advanced case, for channels of your own. */
  get model(): ChannelModel | undefined {
    return this.#managed.model;
  }

  /**
   * Connection events: 'connected' (after a reconnection, every component set up again), 'disconnected', 'blocked',
   * 'unblocked', 'restoreFailed'.
   */
  on<E extends ConnectionEvent>(event: E, listener: (...args: ConnectionEvents[E]) => void): this {
    this.#events.on(event, listener as (...args: unknown[]) => void);
    return this;
  }

  off<E extends ConnectionEvent>(event: E, listener: (...args: ConnectionEvents[E]) => void): this {
    this.#events.off(event, listener as (...args: unknown[]) => void);
    return this;
  }

  /**
   * Puts a component on this connection: its `setup` runs now (by the
   * component) and again after every loss. Returns how to take it off.
   * @internal
   */
  attach(a: Attachment): () => void {
    if (this.#closing) throw new BrokerError('this connection is closed: connect() again', 'CLOSED');
    // A restore that fails is reported to the connection's listeners too.
    const forward = (err: Error) => this.#events.emit('restoreFailed', err);
    a.events.on('restoreFailed', forward);
    this.#attached.add(a);
    return () => {
      a.events.off('restoreFailed', forward);
      this.#attached.delete(a);
    };
  }

  /** Closes every component on it (newest first, each as its own `close()` does), then the connection. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      for (const a of [...this.#attached].reverse())
        await a
          .close()
          .catch((err: unknown) => this.#log.warn({ err }, 'a component failed to close with its connection'));
      await this.#managed.close();
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * A managed connection that components share: `new P({ connection })` for
 * producers, consumers and processors. Same options as a component (`url`,
 * `POSTAGE_*`, `connectionName`, `tls`, `reconnect`, `waitForBrokerMs`).
 * Rejects as a component's first connection does (a wrong password, no broker
 * within `waitForBrokerMs`), leaving nothing open.
 *
 * @example
 * await using conn = await connect();
 * const orders = await OrdersProducer.create({ connection: conn });
 */
export function connect(options: ConnectionOptions = {}): Promise<Connection> {
  return new Connection(options).open();
}

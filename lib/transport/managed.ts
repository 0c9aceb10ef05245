import { EventEmitter } from 'node:events';
import type { ChannelModel } from 'amqplib';
import { type ReconnectOptions, retrying } from '../backoff.js';
import { BrokerError } from '../errors.js';
import type { Logger } from '../log.js';
import { openConnection, type BrokerOptions } from './connection.js';
import { StatusBoard, type ConnectionStatus } from './status.js';
import { TopologyRegistry } from './topology-registry.js';

export type { ReconnectOptions } from '../backoff.js';

/** A component's connection events, and what each listener gets. */
export interface ConnectionEvents {
  /** Back after a loss: channels, topology and consumers restored. */
  connected: [];
  /** The connection (or the component's channel) went away; it reconnects by itself. */
  disconnected: [err: Error];
  /** The broker stopped taking publishes (a memory or disk alarm). */
  blocked: [reason: string];
  unblocked: [];
  /**
   * Setting the component up again after a reconnection (its channels, its
   * topology) failed: it is tried again with backoff while the connection
   * lasts. The error says what the broker refused.
   */
  restoreFailed: [err: Error];
}
export type ConnectionEvent = keyof ConnectionEvents;

/**
 * Owns one component's connection: opens it, and after a loss opens it again
 * with backoff and jitter, trying each broker URL in turn. Components listen
 * for 'connected' to rebuild their channels and topology.
 *
 * Events: 'connected' (model), 'disconnected' (error), 'blocked' (reason), 'unblocked'.
 * @internal
 */
export class ManagedConnection extends EventEmitter {
  #model: ChannelModel | undefined;
  #closing = false;
  /** Aborted by close(): ends every wait of this connection's retry loops at once. */
  readonly #stop = new AbortController();
  /** Where the connection stands; its owner marks it ready once what is on it is set up. */
  readonly board = new StatusBoard();
  /** What is declared on this connection, replayed after each reconnection before the components set up again. */
  readonly topology = new TopologyRegistry();
  readonly #opts: BrokerOptions & { reconnect?: ReconnectOptions };
  readonly #log: Logger;

  constructor(opts: BrokerOptions & { reconnect?: ReconnectOptions }, log: Logger) {
    super();
    this.#opts = opts;
    this.#log = log;
  }

  get model(): ChannelModel | undefined {
    return this.#model;
  }

  get status(): ConnectionStatus {
    return this.board.status;
  }

  get closing(): boolean {
    return this.#closing;
  }

  /** The reconnection timing it was given, which restoring and reopening on it follow too. */
  get reconnect(): ReconnectOptions | undefined {
    return this.#opts.reconnect;
  }

  /**
   * The first connection. While no broker answers it tries again with backoff
   * for up to `waitForBrokerMs` (a component started before its broker); any
   * other failure (refused credentials or vhost, a bad address) ends it at once.
   */
  async connect(): Promise<ChannelModel> {
    const waitMs = this.#opts.waitForBrokerMs ?? 60_000;
    const giveUpAt = Date.now() + waitMs;
    // A first connection waits at least 250 ms between tries: a broker still starting is not helped by more.
    const backoff = { ...this.#opts.reconnect, initialMs: Math.max(this.#opts.reconnect?.initialMs ?? 100, 250) };
    const model = await retrying(
      async (attempt) => {
        const model = await openConnection(this.#opts, this.#log);
        this.#attach(model);
        if (attempt > 0) this.#log.info({ attempts: attempt + 1 }, 'connected: the broker answers');
        return model;
      },
      {
        backoff,
        signal: this.#stop.signal,
        onFailure: (err, attempt, wait) => {
          const unreachable = err instanceof BrokerError && err.code === 'UNREACHABLE';
          if (!unreachable || this.#closing || Date.now() + wait > giveUpAt) {
            this.board.set({ state: 'closed' });
            throw err;
          }
          this.#log.warn(
            { attempt: attempt + 1, nextInMs: Math.round(wait), err: (err as Error).message },
            'no broker answers yet; trying again',
          );
        },
      },
    );
    if (model) return model;
    this.board.set({ state: 'closed' });
    throw new BrokerError('the connection was closed while it was connecting', 'CLOSED');
  }

  #attach(model: ChannelModel): void {
    this.#model = model;
    model.on('close', (err?: Error) => {
      if (this.#model !== model) return;
      this.#model = undefined;
      if (this.#closing) return;
      this.#log.warn({ err: err?.message }, 'connection lost; reconnecting');
      const why = err ?? new Error('connection closed');
      this.board.set({ state: 'reconnecting', attempt: 1, lastError: why });
      this.emit('disconnected', why);
      void this.#reconnect(why);
    });
    model.on('blocked', (reason: string) => {
      this.#log.warn({ reason }, 'broker blocked this connection');
      this.board.set({ state: 'blocked', reason });
      this.emit('blocked', reason);
    });
    model.on('unblocked', () => {
      this.#log.info('broker unblocked this connection');
      this.board.set({ state: 'ready' });
      this.emit('unblocked');
    });
  }

  async #reconnect(lost: Error): Promise<void> {
    let lastError = lost;
    const model = await retrying(
      async (attempt) => {
        const model = await openConnection(this.#opts, this.#log);
        if (this.#closing) {
          await model.close().catch(() => undefined);
          return undefined;
        }
        this.#attach(model);
        this.#log.info({ attempt: attempt + 1 }, 'reconnected');
        return model;
      },
      {
        backoff: this.#opts.reconnect,
        signal: this.#stop.signal,
        delayFirst: true,
        onFailure: (err, attempt) => {
          lastError = err as Error;
          this.#log.debug({ attempt: attempt + 1, err: lastError.message }, 'reconnect failed');
          this.board.set({ state: 'reconnecting', attempt: attempt + 2, lastError });
        },
      },
    );
    if (model) this.emit('connected', model);
  }

  /**
   * Wires a component to this connection: on a loss `lost()` runs and
   * 'disconnected' is re-emitted on `events`; after a reconnection
   * `restore(model)` runs, then 'connected'; 'blocked' and 'unblocked' pass through.
   */
  wireComponent(events: EventEmitter, lost: () => void, restore: (model: ChannelModel) => Promise<void>): void {
    this.on('disconnected', (err) => {
      lost();
      events.emit('disconnected', err);
    });
    this.on('connected', (m: ChannelModel) => {
      // The connection's topology first (one channel, once), then the component on it.
      const setUp = async (model: ChannelModel) => {
        await this.topology.replay(model);
        await restore(model);
      };
      void restoreAndAnnounce(m, setUp, events, this.#log, {
        keepTrying: () => this.#model === m && !this.#closing,
        backoff: this.#opts.reconnect,
      }).then((ok) => {
        if (ok) this.board.set({ state: 'ready' });
      });
    });
    for (const e of ['blocked', 'unblocked'] as const) this.on(e, (...a) => events.emit(e, ...a));
  }

  async close(): Promise<void> {
    this.#closing = true;
    this.#stop.abort();
    this.board.set({ state: 'closed' });
    const m = this.#model;
    this.#model = undefined;
    await m?.close().catch(() => undefined);
  }
}

/** How {@link restoreAndAnnounce} tries. @internal */
export interface RestoreOptions {
  /** Tried again after a failure while this holds (asked before each try); without it, one try. */
  keepTrying?: () => boolean;
  /** The timing between tries: the connection's `reconnect` option. */
  backoff?: ReconnectOptions;
  /** Wait before the first try, starting at wait number `firstWait` (a reopen that carries on a streak). */
  delayFirst?: boolean;
  firstWait?: number;
  /** A wait is about to begin (numbered from 0, across `firstWait`). */
  onWait?: (wait: number, waitMs: number) => void;
}

/**
 * Restores a component on `model`, then emits 'connected'. A restore that
 * fails is reported ('restoreFailed', with the error) and, with
 * `keepTrying`, tried again with backoff while it holds; resolves to whether
 * it was restored.
 * @internal
 */
export async function restoreAndAnnounce(
  model: ChannelModel,
  restore: (model: ChannelModel) => Promise<void>,
  events: EventEmitter,
  log: Logger,
  options: RestoreOptions = {},
): Promise<boolean> {
  const { keepTrying } = options;
  try {
    const done = await retrying(
      async () => {
        await restore(model);
        return true;
      },
      {
        ...options,
        keepGoing: keepTrying,
        // Nobody awaits these waits, and what they restore may be closed meanwhile: they must not hold the process.
        unref: true,
        onFailure: (err, attempt, wait) => {
          if (events.listenerCount('restoreFailed') > 0) events.emit('restoreFailed', err as Error);
          if (!keepTrying?.()) {
            log.error({ err }, 'could not restore the component on its connection');
            throw err;
          }
          log.error(
            { err, attempt: attempt + 1, nextInMs: Math.round(wait) },
            'could not restore the component on its connection; trying again',
          );
        },
      },
    );
    if (!done) return false;
  } catch {
    return false;
  }
  events.emit('connected');
  return true;
}

/**
 * After the broker closed one of a component's channels: restore it on the
 * same connection shortly, and again with backoff while the broker keeps
 * closing it, until the component has a channel again, is closed, or has no
 * connection (a connection loss, left to the reconnection, also closes its
 * channels: the first wait lets that be noticed first). One such loop per
 * component: a channel closed again while one runs is left to it.
 * @internal
 */
export function reopenSoon(opts: {
  model: () => ChannelModel | undefined;
  /** Whether nothing is left to reopen: the component has its channel again, or is closed. */
  recovered: () => boolean;
  restore: (model: ChannelModel) => Promise<void>;
  events: EventEmitter;
  log: Logger;
  what: string;
  backoff?: ReconnectOptions;
}): void {
  const model = opts.model();
  if (reopening.has(opts.events) || opts.recovered() || !model) return;
  reopening.add(opts.events);
  // A restore that lasted less than REOPEN_CALM_MS before the broker closed the channel again does not start the
  // backoff over: the next loop carries on from the wait the last one reached.
  const last = reopens.get(opts.events);
  let wait = last && Date.now() - last.at < REOPEN_CALM_MS ? last.nextWait : 0;
  let delayMs = 0;
  void restoreAndAnnounce(
    model,
    (m) => {
      opts.log.warn(
        { attempt: wait, delayMs: Math.round(delayMs) },
        `${opts.what} channel closed by the broker; reopening it`,
      );
      return opts.restore(m);
    },
    opts.events,
    opts.log,
    {
      keepTrying: () => !opts.recovered() && opts.model() === model,
      backoff: opts.backoff,
      delayFirst: true,
      firstWait: wait,
      onWait: (n, ms) => {
        wait = n + 1;
        delayMs = ms;
      },
    },
  ).finally(() => {
    reopens.set(opts.events, { at: Date.now(), nextWait: wait });
    reopening.delete(opts.events);
    // A channel lost again as the loop ended was left to it: start the next one.
    if (!opts.recovered() && opts.model() === model) reopenSoon(opts);
  });
}

/** The components (by their events emitter) whose channel a reopen loop is restoring now. */
const reopening = new WeakSet<EventEmitter>();
/** When each component's last reopen loop ended, and which wait its next one starts at. */
const reopens = new WeakMap<EventEmitter, { at: number; nextWait: number }>();
const REOPEN_CALM_MS = 10_000;

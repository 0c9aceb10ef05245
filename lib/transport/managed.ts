import { EventEmitter } from 'node:events';
import type { ChannelModel } from 'amqplib';
import { backoffMs, jittered } from '../backoff.js';
import { BrokerError } from '../errors.js';
import type { Logger } from '../log.js';
import { openConnection, type ConnectOptions } from './connection.js';
import { StatusBoard, type ConnectionStatus } from './status.js';
import { TopologyRegistry } from './topology-registry.js';

/** Reconnection timing. Delays grow by `factor` from `initialMs` up to `maxMs`, each with ±`jitter`. */
export interface ReconnectOptions {
  /** @default 100 */
  initialMs?: number;
  /** @default 10000 */
  maxMs?: number;
  /** @default 2 */
  factor?: number;
  /** @default 0.2 */
  jitter?: number;
}

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
  /** Where the connection stands; its owner marks it ready once what is on it is set up. */
  readonly board = new StatusBoard();
  /** What is declared on this connection, replayed after each reconnection before the components set up again. */
  readonly topology = new TopologyRegistry();
  readonly #opts: ConnectOptions & { reconnect?: ReconnectOptions };
  readonly #log: Logger;

  constructor(opts: ConnectOptions & { reconnect?: ReconnectOptions }, log: Logger) {
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

  /**
   * The first connection. While no broker answers it tries again with backoff
   * for up to `waitForBrokerMs` (a component started before its broker); any
   * other failure (refused credentials or vhost, a bad address) ends it at once.
   */
  async connect(): Promise<ChannelModel> {
    const waitMs = this.#opts.waitForBrokerMs ?? 60_000;
    const giveUpAt = Date.now() + waitMs;
    for (let attempt = 0; ; attempt++) {
      try {
        const model = await openConnection(this.#opts, this.#log);
        this.#attach(model);
        if (attempt > 0) this.#log.info({ attempts: attempt + 1 }, 'connected: the broker answers');
        return model;
      } catch (err) {
        const { initialMs = 100, maxMs = 10_000, factor = 2, jitter = 0.2 } = this.#opts.reconnect ?? {};
        const wait = jittered(backoffMs(attempt, Math.max(initialMs, 250), maxMs, factor), jitter, maxMs);
        if (
          !(err instanceof BrokerError && err.code === 'UNREACHABLE') ||
          this.#closing ||
          Date.now() + wait > giveUpAt
        ) {
          this.board.set({ state: 'closed' });
          throw err;
        }
        this.#log.warn(
          { attempt: attempt + 1, nextInMs: Math.round(wait), err: err.message },
          'no broker answers yet; trying again',
        );
        await new Promise((r) => setTimeout(r, wait));
      }
    }
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
    const { initialMs = 100, maxMs = 10_000, factor = 2, jitter = 0.2 } = this.#opts.reconnect ?? {};
    let lastError = lost;
    for (let attempt = 0; !this.#closing; attempt++) {
      if (attempt > 0) this.board.set({ state: 'reconnecting', attempt: attempt + 1, lastError });
      await new Promise((r) => setTimeout(r, jittered(backoffMs(attempt, initialMs, maxMs, factor), jitter, maxMs)));
      if (this.#closing) return;
      try {
        const model = await openConnection(this.#opts, this.#log);
        if (this.#closing) {
          await model.close().catch(() => undefined);
          return;
        }
        this.#attach(model);
        this.#log.info({ attempt: attempt + 1 }, 'reconnected');
        this.emit('connected', model);
        return;
      } catch (err) {
        lastError = err as Error;
        this.#log.debug({ attempt: attempt + 1, err: (err as Error).message }, 'reconnect failed');
      }
    }
  }

  /**
   * Wires a component to this connection: on a loss `lost()` runs and
   * 'disconnected' is re-emitted on `events`; after a reconnection
   * `restore(model)` runs, then 'connected'; 'blocked' and 'unblocked' pass through.
   */
  serve(events: EventEmitter, lost: () => void, restore: (model: ChannelModel) => Promise<void>): void {
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
      void restoreAndAnnounce(m, setUp, events, this.#log, () => this.#model === m && !this.#closing).then((ok) => {
        if (ok) this.board.set({ state: 'ready' });
      });
    });
    for (const e of ['blocked', 'unblocked'] as const) this.on(e, (...a) => events.emit(e, ...a));
  }

  async close(): Promise<void> {
    this.#closing = true;
    this.board.set({ state: 'closed' });
    const m = this.#model;
    this.#model = undefined;
    await m?.close().catch(() => undefined);
  }
}

/**
 * Restores a component on `model`, then emits 'connected'. A restore that
 * fails is reported ('restoreFailed', with the error) and, with
 * `keepTrying`, tried again with backoff (100 ms doubling to 10 s) while it
 * holds; resolves to whether it was restored.
 * @internal
 */
export async function restoreAndAnnounce(
  model: ChannelModel,
  restore: (model: ChannelModel) => Promise<void>,
  events: EventEmitter,
  log: Logger,
  keepTrying?: () => boolean,
): Promise<boolean> {
  for (let attempt = 0; ; attempt++) {
    try {
      await restore(model);
      events.emit('connected');
      return true;
    } catch (err) {
      if (events.listenerCount('restoreFailed') > 0) events.emit('restoreFailed', err as Error);
      if (!keepTrying?.()) {
        log.error({ err }, 'could not restore the component on its connection');
        return false;
      }
      const wait = backoffMs(attempt, 100, 10_000);
      log.error(
        { err, attempt: attempt + 1, nextInMs: wait },
        'could not restore the component on its connection; trying again',
      );
      await new Promise((r) => setTimeout(r, wait).unref());
      if (!keepTrying()) return false;
    }
  }
}

/**
 * After the broker closed one of a component's channels: restore it on the
 * same connection shortly, unless by then the component has a channel again,
 * is closed, or has no connection (a connection loss, left to the reconnection,
 * also closes its channels: the delay lets that be noticed first).
 * @internal
 */
export function reopenSoon(opts: {
  model: () => ChannelModel | undefined;
  settled: () => boolean;
  restore: (model: ChannelModel) => Promise<void>;
  events: EventEmitter;
  log: Logger;
  what: string;
}): void {
  // A restore the broker keeps refusing (a passive exchange that is gone) closes the channel again at once:
  // reopen with backoff, 50 ms doubling up to 5 s, starting over once a reopen has lasted REOPEN_CALM_MS.
  const now = Date.now();
  const last = reopens.get(opts.events);
  const streak = last && now - last.at < REOPEN_CALM_MS ? last.streak + 1 : 0;
  reopens.set(opts.events, { at: now, streak });
  const delay = backoffMs(streak, 50, 5000);
  setTimeout(() => {
    const model = opts.model();
    if (opts.settled() || !model) return;
    opts.log.warn({ attempt: streak + 1, delayMs: delay }, `${opts.what} channel closed by the broker; reopening it`);
    // One try: a restore the broker refuses closes the channel again, and that schedules the next, with backoff.
    void restoreAndAnnounce(model, opts.restore, opts.events, opts.log);
  }, delay);
}

/** When each component (by its events emitter) last had a channel reopened, and how many times in a row. */
const reopens = new WeakMap<EventEmitter, { at: number; streak: number }>();
const REOPEN_CALM_MS = 10_000;

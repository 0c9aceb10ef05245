import type { ConsumeMessage } from 'amqplib';
import { StreamError, type BrokerError } from '../errors.js';
import type { AnyResult } from '../envelope/messages.js';
import { STREAM, type StreamKind } from '../envelope/stream-protocol.js';

/** What a stream's caller side needs of the RPC client that made it. @internal */
export interface StreamCallOptions {
  /** What it is, for messages: `exchange/key name`. */
  what: string;
  window: number;
  /**
   * Ms without an item (while waiting for one) before the iteration fails; also how often the server must hear from us.
   */
  idleMs: number;
  /** Sends a control message to the server's address. */
  send(to: string, kind: StreamKind, headers?: Record<string, unknown>): void;
  decode(msg: ConsumeMessage): AnyResult;
  /** The stream is over: forget it. */
  finished(): void;
}

/**
 * What a stream's caller side shares with what outlives it: the server's
 * address, once known. The keepalive timer and the RPC client hold this and
 * a weak reference to the call, never the call itself, so that an iterator
 * its caller dropped without `return()` can be collected (see {@link dropped}).
 * @internal
 */
export interface StreamTicket {
  control: string | undefined;
  keepalive: NodeJS.Timeout | undefined;
  readonly send: StreamCallOptions['send'];
  readonly finished: StreamCallOptions['finished'];
}

/**
 * A stream whose iterator was garbage-collected before it ended: the server is
 * told to stop (its generator's `finally` runs, its worker is free) and the
 * keepalive stops, instead of keeping the stream "alive" for as long as the
 * process lives.
 */
const dropped = new FinalizationRegistry<StreamTicket>((t) => {
  clearInterval(t.keepalive);
  if (t.control) t.send(t.control, 'cancel');
  t.finished();
});

/**
 * The caller's end of an RPC stream: an async iterator over the values the
 * server yields. Grants credit as items are taken (half a window at a time),
 * keeps the server informed that it is alive, and tells it when the caller
 * stops early (`return()`, a `break` out of `for await`, or the iterator
 * dropped and collected).
 * @internal
 */
export class StreamCall implements AsyncIterableIterator<unknown> {
  readonly #items: unknown[] = [];
  #done = false;
  #finished = false;
  #error: Error | undefined;
  #waiter: { resolve: (r: IteratorResult<unknown>) => void; reject: (e: Error) => void } | undefined;
  readonly ticket: StreamTicket;
  #cancelled = false;
  #taken = 0;
  #idle: NodeJS.Timeout | undefined;

  constructor(private readonly o: StreamCallOptions) {
    const ticket: StreamTicket = (this.ticket = {
      control: undefined,
      keepalive: undefined,
      send: o.send,
      finished: o.finished,
    });
    // The server stops a stream it hears nothing of: a caller that is slow, not gone, says so. The timer holds
    // the ticket, not the call: a dropped iterator is collected, and its finalizer stops this.
    ticket.keepalive = setInterval(
      () => ticket.control && o.send(ticket.control, 'keepalive'),
      Math.max(50, Math.floor(o.idleMs / 3)),
    );
    ticket.keepalive.unref();
    dropped.register(this, ticket, ticket);
  }

  get #control(): string | undefined {
    return this.ticket.control;
  }

  /** A message from the server under this stream's correlation id. */
  deliver(msg: ConsumeMessage): void {
    if (this.#finished) return;
    const headers = (msg.properties.headers ?? {}) as Record<string, unknown>;
    const kind = headers[STREAM.kind] as StreamKind | undefined;
    const control = msg.properties.replyTo as string | undefined;
    if (control) this.ticket.control = control;
    if (this.#cancelled) {
      // Stopped before the server's address was known: it is now.
      if (control) this.o.send(control, 'cancel');
      this.#finish();
      return;
    }
    if (this.#done) return;
    if (kind === 'open') return;
    if (kind === 'item') {
      const r = this.o.decode(msg);
      this.#push(r.body.content.value);
      return;
    }
    if (kind === 'end') {
      this.#end(undefined);
      return;
    }
    const r = this.o.decode(msg);
    const c = r.body.content;
    if (kind === 'error')
      this.#end(
        new StreamError(
          `stream ${this.o.what} failed on the server: ` +
            `${c.type === 'exception' ? `${String(c.value)}: ` : ''}${c.message}`,
          'remote',
          c.type === 'exception' ? String(c.value) : undefined,
        ),
      );
    else
      this.#end(
        new StreamError(
          `stream ${this.o.what}: the server answered with one ${c.type} result, not a ` +
            `stream${c.message ? ` (${c.message})` : ''}: is its handler an async generator (or { stream: true })?`,
          'not-a-stream',
        ),
      );
  }

  /** The stream cannot go on (its request was unroutable, its channel closed). */
  fail(err: BrokerError | StreamError): void {
    this.#end(err);
  }

  next(): Promise<IteratorResult<unknown>> {
    if (this.#items.length > 0) return Promise.resolve({ done: false, value: this.#take() });
    if (this.#error) return Promise.reject(this.#error);
    if (this.#done) return Promise.resolve({ done: true, value: undefined });
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
      this.#idle = setTimeout(() => {
        if (this.#control) this.o.send(this.#control, 'cancel');
        this.#end(
          new StreamError(
            `stream ${this.o.what}: nothing from the server within ${this.o.idleMs / 1000} s (it may have gone): the ` +
              'stream is over',
            'idle',
          ),
        );
      }, this.o.idleMs);
    });
  }

  /**
   * Stops early: the server is told, and its generator is closed (its `finally` runs). Calling it again does nothing.
   */
  return(): Promise<IteratorResult<unknown>> {
    if (!this.#done) {
      this.#cancelled = true;
      if (this.#control) {
        this.o.send(this.#control, 'cancel');
        this.#end(undefined);
      } else {
        // The server's address comes with its first message: the cancel goes then (see deliver), bounded by the idle
        // time.
        this.#done = true;
        this.#items.length = 0;
        setTimeout(() => this.#finish(), this.o.idleMs).unref();
      }
    }
    return Promise.resolve({ done: true, value: undefined });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<unknown> {
    return this;
  }

  #push(value: unknown): void {
    const w = this.#waiter;
    if (w) {
      this.#waiter = undefined;
      clearTimeout(this.#idle);
      this.#taken++;
      this.#credit();
      w.resolve({ done: false, value });
    } else this.#items.push(value);
  }

  #take(): unknown {
    this.#taken++;
    this.#credit();
    return this.#items.shift();
  }

  /** Half a window taken: the server may send that many more. */
  #credit(): void {
    const half = Math.max(1, Math.floor(this.o.window / 2));
    if (this.#taken % half === 0 && this.#control) this.o.send(this.#control, 'credit', { [STREAM.credit]: half });
  }

  #end(err: Error | undefined): void {
    if (this.#finished) return;
    this.#done = true;
    // Items that came before an error are still taken first (next() looks at them before the error).
    if (err) this.#error = err;
    const w = this.#waiter;
    this.#waiter = undefined;
    clearTimeout(this.#idle);
    if (w) {
      if (err) w.reject(err);
      else w.resolve({ done: true, value: undefined });
    }
    this.#finish();
  }

  #finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    clearInterval(this.ticket.keepalive);
    dropped.unregister(this.ticket);
    this.o.finished();
  }
}

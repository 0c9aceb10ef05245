import type { ChannelModel } from 'amqplib';
import type { Writable } from 'node:stream';
import { microtask } from '../microthreads/microtask.js';
import type { Logger } from '../log.js';

/** The parts of amqplib's connection internals this module relies on; checked before use. */
interface MuxedConnection {
  stream?: Writable;
  muxer?: { _readIncoming?: () => void; newStreams?: unknown[]; blocked?: boolean };
  channels?: Array<{ buffer?: unknown } | null>;
}

const COALESCED = Symbol('postage.coalesced');
let warned = false;
/** How much one pass may gather before the socket reports itself full. */
const PASS_BYTES = 256 * 1024;

/**
 * Makes one socket write out of each pass of amqplib's frame multiplexer.
 *
 * amqplib queues frames per channel and, once per event-loop turn, its mux
 * copies them to the socket one `write()` at a time: a system call per frame,
 * so a burst of 1,000 publishes or acks costs 1,000 syscalls, which profiles
 * as the largest single cost of a busy component. Corking the socket for the
 * pass turns those into one `writev`, with no added latency (the uncork runs
 * in the same tick) and the socket's backpressure intact (writes still report
 * a full buffer, so the mux still waits for 'drain').
 *
 * Internals are feature-detected: if an amqplib release renames them, the
 * connection simply keeps amqplib's own behaviour, and `log` hears of it once
 * per process (package.json pins amqplib to the releases this was proven on).
 * Returns whether it applied.
 * @internal
 */
export function coalesceWrites(model: ChannelModel, log?: Logger): boolean {
  const conn = model.connection as unknown as MuxedConnection;
  const stream = conn.stream;
  const mux = conn.muxer;
  const pass = mux?._readIncoming;
  if (!mux || typeof pass !== 'function' || typeof stream?.cork !== 'function' || typeof stream.uncork !== 'function') {
    if (log && !warned) {
      warned = true;
      log.warn('this amqplib release is not one postage-ts was proven on: frames are written one by one, which works but costs throughput (install the amqplib range package.json names)');
    }
    return false;
  }
  if ((mux as Record<symbol, unknown>)[COALESCED]) return true;
  // While corked, a write reports a full buffer past the high-water mark and the mux stops until 'drain':
  // at Node's 16 KiB default a pass would end after a message or two of 10 KiB. A pass may gather more,
  // but only the pass: outside it, backpressure starts at the socket's own mark, as everywhere else.
  const state = (stream as unknown as { _writableState?: { highWaterMark?: unknown } })._writableState;
  const own = state && typeof state.highWaterMark === 'number' ? state.highWaterMark : undefined;
  const raise = state !== undefined && own !== undefined && own < PASS_BYTES;
  mux._readIncoming = function readCorked(this: unknown) {
    if (raise) state.highWaterMark = PASS_BYTES;
    stream.cork();
    try {
      pass.call(this);
    } finally {
      stream.uncork();
      if (raise) state.highWaterMark = own;
    }
  };
  (mux as Record<symbol, unknown>)[COALESCED] = true;
  return true;
}

/**
 * Writes what a channel has queued now, instead of at the mux's next pass
 * (a `setImmediate` away, after every microtask the process still has to
 * run). For acks and RPC replies: the broker sends the next delivery, or the
 * caller gets its answer, that much sooner. Feature-detected like
 * {@link coalesceWrites}: without the internals, the mux's own pass writes it.
 * @internal
 */
export function flushChannel(channel: object): void {
  // amqplib's Channel: its number and its connection, undeclared in its types.
  const { ch: n, connection } = channel as { ch?: unknown; connection?: unknown };
  const conn = connection as MuxedConnection | undefined;
  const mux = conn?.muxer;
  if (!mux || typeof n !== 'number' || !Array.isArray(mux.newStreams) || typeof mux._readIncoming !== 'function' || mux.blocked) return;
  const buffer = conn?.channels?.[n]?.buffer;
  if (!buffer) return;
  // The mux reads every stream it is given until each is empty; its own 'readable' pass later finds this one drained.
  mux.newStreams.push(buffer);
  mux._readIncoming();
}

/** Kept on a channel: whether its flush is due (a flag, not a set of channels: it flips on every call), and the flush, made once. */
const FLUSH_DUE = Symbol('postage.flushDue');
const FLUSH = Symbol('postage.flush');

/**
 * {@link flushChannel} at the end of this stretch of synchronous code (a
 * microtask): what a loop publishes goes out in one write, still well before
 * the mux's own pass.
 * @internal
 */
export function flushChannelSoon(channel: object): void {
  const ch = channel as { [FLUSH_DUE]?: boolean; [FLUSH]?: () => void };
  if (ch[FLUSH_DUE]) return;
  ch[FLUSH_DUE] = true;
  microtask(
    (ch[FLUSH] ??= () => {
      ch[FLUSH_DUE] = false;
      flushChannel(channel);
    }),
  );
}

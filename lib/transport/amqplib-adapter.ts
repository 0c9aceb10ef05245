/**
 * Every place postage-ts reads or changes amqplib's private internals, and
 * nowhere else: a minor amqplib release may move any of them, so each is
 * feature-detected here (postage-ts then keeps amqplib's own behaviour and
 * says so once), and `spec/transport/amqplib-adapter.spec.ts` fails with a
 * clear message, naming the detail, on a release where one moved. No other
 * file in lib/ touches an `_`-prefixed field or an amqplib prototype (a spec
 * greps for it).
 *
 * What is here, and why it is kept:
 * - the frame multiplexer (`muxer._readIncoming`, `muxer.newStreams`, each
 *   channel's `buffer`, the socket's `_writableState.highWaterMark`): one
 *   socket write per pass instead of one per frame, and acks/replies flushed
 *   at once (see {@link coalesceWrites});
 * - `Connection.prototype.step`, reached through `require.cache`: the reply
 *   code of a broker that refuses the handshake (see {@link watchHandshakes});
 * - `connection.channelMax` and `connection.channels`: a clear error when a
 *   shared connection runs out of channels;
 * - `connection.expectSocketClose`: whether a closing channel is part of its
 *   connection closing (one loss reported once).
 */
import { createRequire } from 'node:module';
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
      log.warn(
        'this amqplib release is not one postage-ts was proven on: frames are written one by one, which works but ' +
          'costs throughput (install the amqplib range package.json names)',
      );
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
  if (
    !mux ||
    typeof n !== 'number' ||
    !Array.isArray(mux.newStreams) ||
    typeof mux._readIncoming !== 'function' ||
    mux.blocked
  )
    return;
  const buffer = conn?.channels?.[n]?.buffer;
  if (!buffer) return;
  // The mux reads every stream it is given until each is empty; its own 'readable' pass later finds this one drained.
  mux.newStreams.push(buffer);
  mux._readIncoming();
}

/**
 * Kept on a channel: whether its flush is due (a flag, not a set of channels: it flips on every call), and the flush,
 * made once.
 */
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

/** What the broker said when it closed a connection during the opening handshake. */
export interface HandshakeRefusal {
  replyCode: number;
  replyText: string;
}

/** AMQP 0-9-1 connection.close: class 10, method 50. */
const CONNECTION_CLOSE = (10 << 16) | 50;
const PATCHED = Symbol('postage.handshakeWatched');

interface Frame {
  id?: number;
  channel?: number;
  fields?: { replyCode?: unknown; replyText?: unknown };
}
type StepFn = (this: unknown, cb: (err: Error | null, frame: Frame | null) => void) => void;
interface ConnectionProto {
  step?: StepFn;
  [PATCHED]?: boolean;
}

let lastRefusal: HandshakeRefusal | undefined;
let watched = false;

/**
 * amqplib 2.x reports a broker that closes the connection during the
 * handshake (a missing vhost, a refused login) as
 * `Expected ConnectionOpenOk; got <ConnectionClose channel:0>`, dropping the
 * reply code and text. Its handshake reads frames through
 * `Connection.prototype.step` (after the handshake frames go through another
 * path), so watching `step` records the close frame the broker sent. amqplib
 * turns that frame into the rejected `connect()` synchronously, and frames of
 * other connections arrive in later I/O callbacks: the refusal read right
 * after the rejection is this connection's.
 *
 * The class is not exported by amqplib, but amqplib is CommonJS: its module is
 * in `require.cache` once `amqplib` is loaded. Feature-detected: if a release
 * renames it, errors fall back to amqplib's own message.
 * @internal
 */
export function watchHandshakes(): boolean {
  if (watched) return true;
  const cache = createRequire(`${process.cwd()}/`).cache;
  let found = false;
  for (const [file, mod] of Object.entries(cache)) {
    if (!/[\\/]amqplib[\\/]lib[\\/]connection\.js$/.test(file)) continue;
    const proto = (mod?.exports as { Connection?: { prototype?: ConnectionProto } } | undefined)?.Connection?.prototype;
    const step = proto?.step;
    if (!proto || typeof step !== 'function') continue;
    found = true;
    if (proto[PATCHED]) continue;
    proto.step = function watchedStep(this: unknown, cb) {
      step.call(this, (err, frame) => {
        if (frame && frame.id === CONNECTION_CLOSE && frame.channel === 0) {
          lastRefusal = {
            replyCode: Number(frame.fields?.replyCode),
            replyText: String(frame.fields?.replyText ?? ''),
          };
        }
        cb(err, frame);
      });
    };
    proto[PATCHED] = true;
  }
  watched = found;
  return found;
}

/** The close frame of the handshake that just failed, once. @internal */
export function takeHandshakeRefusal(): HandshakeRefusal | undefined {
  const r = lastRefusal;
  lastRefusal = undefined;
  return r;
}

/** The most channels amqplib will open on this connection (the broker's channel_max), when it says. */
export function channelLimit(model: ChannelModel): number | undefined {
  const max = (model.connection as unknown as { channelMax?: unknown }).channelMax;
  return typeof max === 'number' ? max : undefined;
}

/** How many channels are open on this connection now (amqplib's table, less channel 0). */
export function openChannelCount(model: ChannelModel): number {
  const channels = (model.connection as unknown as { channels?: unknown[] }).channels;
  return Array.isArray(channels) ? channels.filter(Boolean).length - 1 : 0;
}

/** Whether the connection is closing its socket (so a channel closing now is part of that, not a loss of its own). */
export function expectsSocketClose(model: ChannelModel): boolean {
  return (model.connection as unknown as { expectSocketClose?: boolean }).expectSocketClose === true;
}

/**
 * Which of the internals above this amqplib has, by name: the adapter's
 * spec reads it, and fails naming any that moved.
 */
export function internalsOf(model: ChannelModel): Record<string, boolean> {
  const conn = model.connection as unknown as MuxedConnection & { channelMax?: unknown; expectSocketClose?: unknown };
  const state = (conn.stream as unknown as { _writableState?: { highWaterMark?: unknown } } | undefined)
    ?._writableState;
  return {
    'connection.stream (cork, uncork)':
      typeof conn.stream?.cork === 'function' && typeof conn.stream?.uncork === 'function',
    'connection.stream._writableState.highWaterMark': typeof state?.highWaterMark === 'number',
    'connection.muxer._readIncoming': typeof conn.muxer?._readIncoming === 'function',
    'connection.muxer.newStreams': Array.isArray(conn.muxer?.newStreams),
    'connection.channels[n].buffer':
      Array.isArray(conn.channels) && conn.channels.some((c) => c !== null && c !== undefined && 'buffer' in c),
    'connection.channelMax': typeof conn.channelMax === 'number',
    'connection.expectSocketClose': 'expectSocketClose' in conn,
    'Connection.prototype.step (require.cache)': watchHandshakes(),
  };
}

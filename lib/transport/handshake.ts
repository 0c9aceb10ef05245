import { createRequire } from 'node:module';

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
          lastRefusal = { replyCode: Number(frame.fields?.replyCode), replyText: String(frame.fields?.replyText ?? '') };
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

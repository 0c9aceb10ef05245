/**
 * The steady-state publish -> consume case, the way the held-out bench of
 * issue #37 measures it, and stricter than the rows it replaces: those
 * published persistent messages to a durable queue, so both sides waited on
 * the broker's disk, which hid part of the client's and the broker's cost
 * per message behind the same fixed wait.
 *
 * The raw side is the least a raw amqplib user writes for the same work: a
 * confirm channel publishing an envelope with 100 bytes of text (encoded per
 * message) to an exclusive, non-durable queue, not persistent, not
 * mandatory, no other property, `waitForConfirms()` every 500; a consumer at
 * the given prefetch (100, or 1 for the defaults row) that parses each body
 * and acks it singly. postage-ts's side is a GenericProducer and a
 * MessageProcessor through the public API with their own defaults (commands
 * are persistent and mandatory, prefetch 1 unless given), 500 sends awaited
 * together. A connection per component on both sides, both in this process.
 *
 * Each run reports messages per second, the client's CPU per message (this
 * process, both halves) and the broker's (the beam.smp of the broker, read
 * from /proc before and after, when it runs on this machine).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import {
  GenericProducer,
  MessageCommand,
  MessageHandler,
  MessageProcessor,
  MicroScheduler,
  type ExchangeObject,
} from '../dist/index.js';
import { rawConnect, sendAll, uid, WINDOW } from './cases.js';

/** One run's figures. `brokerUs` is NaN where the broker's process cannot be read. */
export interface Steady {
  perSecond: number;
  clientUs: number;
  brokerUs: number;
  /** The client's CPU split, user and system µs per message. */
  userUs: number;
  systemUs: number;
}

/** The command both sides send: an envelope whose content carries `bytes` bytes of text. */
export function textEnvelope(bytes: number): object {
  return new MessageCommand('payload', { text: 'x'.repeat(bytes) }).setFingerprint({ name: 'bench' }).body;
}

let brokerPid: number | null | undefined;

/**
 * The broker's OS process on this machine: BENCH_BROKER_PID, else what `rabbitmqctl status` says (the shared broker's
 * beam.smp, not a private node a spec started), else none.
 */
function findBroker(): number | null {
  if (brokerPid !== undefined) return brokerPid;
  const given = Number(process.env.BENCH_BROKER_PID);
  if (Number.isInteger(given) && given > 0) return (brokerPid = given);
  try {
    const out = execFileSync('rabbitmqctl', ['status'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const m = /OS PID: (\d+)/.exec(out);
    brokerPid = m ? Number(m[1]) : null;
  } catch {
    brokerPid = null;
  }
  return brokerPid;
}

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ: 100 on Linux everywhere but a few old ports). */
const TICKS = 100;

/** The broker's CPU so far (user + system), µs, or NaN. */
function brokerCpu(): number {
  const pid = findBroker();
  if (pid === null) return Number.NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces), from the 3rd: utime is the 14th, stime the 15th.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(rest[11]) + Number(rest[12])) * 1e6) / TICKS;
  } catch {
    return Number.NaN;
  }
}

/** Starts the clocks; `stop(n)` gives the figures per message. */
function clocks() {
  // The broker first: finding it the first time runs rabbitmqctl.
  const broker0 = brokerCpu();
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  return (n: number): Steady => {
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    return {
      perSecond: n / (ms / 1000),
      clientUs: (cpu.user + cpu.system) / n,
      userUs: cpu.user / n,
      systemUs: cpu.system / n,
      brokerUs: (brokerCpu() - broker0) / n,
    };
  };
}

/**
 * What a GenericProducer's command carries besides its body (a message id, a timestamp, its content type, persistent,
 * mandatory), for a raw side that does the same work: the broker and amqplib pay for each property.
 */
function postageProperties(i: number) {
  return {
    messageId: `${process.pid}.bench.${i}`,
    timestamp: Math.floor(Date.now() / 1000),
    contentType: 'application/json',
    persistent: true,
    mandatory: true,
  };
}

/**
 * Raw amqplib: `n` messages with `bytes` of text, published and consumed at `prefetch`; with `sameProperties`, each
 * carrying what a Postage command does (see {@link postageProperties}).
 */
export async function rawSteady(
  url: string,
  n: number,
  prefetch: number,
  bytes = 100,
  sameProperties = false,
): Promise<Steady> {
  const subConn = await rawConnect(url);
  const pubConn = await rawConnect(url);
  const sub = await subConn.createChannel();
  const q = uid();
  await sub.assertQueue(q, { exclusive: true, durable: false });
  await sub.prefetch(prefetch);
  let got = 0;
  let finish!: () => void;
  const done = new Promise<void>((r) => (finish = r));
  await sub.consume(q, (m) => {
    if (!m) return;
    JSON.parse(m.content.toString());
    sub.ack(m);
    if (++got === n) finish();
  });
  const pub = await pubConn.createConfirmChannel();
  const body = textEnvelope(bytes);
  const stop = clocks();
  for (let sent = 0; sent < n; ) {
    const k = Math.min(WINDOW, n - sent);
    for (let i = 0; i < k; i++) {
      const content = Buffer.from(JSON.stringify(body));
      if (sameProperties) pub.publish('', q, content, postageProperties(sent + i));
      else pub.publish('', q, content);
    }
    await pub.waitForConfirms();
    sent += k;
  }
  await done;
  const figures = stop(n);
  await pubConn.close();
  await subConn.close();
  return figures;
}

/**
 * postage-ts: `n` messages with `bytes` of text from a producer to a processor, `prefetch` given unless it is the
 * default (1).
 */
export async function postageSteady(url: string, n: number, prefetch: number, bytes = 100): Promise<Steady> {
  const ex: ExchangeObject = { name: '', type: 'direct' };
  const q = uid();
  let got = 0;
  let finish!: () => void;
  const done = new Promise<void>((r) => (finish = r));
  // Classes made per run, as the raw side's channels are: the pipeline must not depend on meeting one class only.
  class Sink extends MessageProcessor {
    @MessageHandler('command', 'payload')
    payload() {
      if (++got === n) finish();
    }
  }
  class Source extends GenericProducer {
    static override eks = [[ex, q] as const];
  }
  const sink = new Sink({
    url,
    ...(prefetch === 1 ? {} : { prefetch }),
    handleSignals: false,
    eqk: [[ex, [[{ name: q, flags: { exclusive: true, durable: false } }, q]]]],
  });
  await sink.ready();
  const s = new MicroScheduler();
  s.addMicrothread(sink);
  const running = s.run();
  const p = await Source.create({ url });
  const body = textEnvelope(bytes);
  const stop = clocks();
  await sendAll(p, body, n, WINDOW);
  await done;
  const figures = stop(n);
  s.stop();
  await running;
  await p.close();
  await sink.close();
  return figures;
}

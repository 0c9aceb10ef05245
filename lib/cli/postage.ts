#!/usr/bin/env node
/**
 * The `postage` command: find components, send them commands and RPCs, and
 * watch what passes on an exchange. A thin client of the library.
 *
 * Exit codes: 0 done; 1 the remote side failed (no answer, an error result);
 * 2 bad usage; 3 the broker could not be reached or refused; 4 a message no
 * queue took (unroutable). Output goes to stdout, failures (one line) and
 * library logs to stderr.
 */
import { parseArgs } from 'node:util';
import { GenericApplicationExchange, PresenceExchange } from '../application/generic_application.js';
import { BrokerError, ConfigError } from '../errors.js';
import { JsonEncoder } from '../messaging/encoder.js';
import type { ExchangeObject } from '../messaging/exchange.js';
import type { FingerprintDict } from '../messaging/fingerprint.js';
import { MessageCommand } from '../messaging/messages.js';
import { GenericProducer, type Producer } from '../messaging/producer.js';
import { openConnection } from '../transport/connection.js';
import { openChannel } from '../transport/channels.js';
import { configureLogging } from '../log.js';
import { pino } from 'pino';
import { deliveryInfo } from '../messaging/delivery/context.js';
import type { ProcessorDescription } from '../messaging/describe.js';
import type { PartitionsDescription } from '../messaging/partitions/spread.js';
import { fileURLToPath } from 'node:url';
import { SUPERVISED } from '../lifecycle/restart.js';
import { runModule, superviseModule } from './run.js';
import { UsageError } from './usage.js';
import { whyNoneAnswered } from '../operations/directory.js';
import { errors, ERRORS_HELP, takeReplayTarget } from './errors.js';
import { graph, GRAPH_HELP } from './graph.js';
import { dashboard, DASHBOARD_HELP } from './dashboard.js';
import { asyncapi, ASYNCAPI_HELP } from './asyncapi.js';
import { VERSION } from '../version.js';
import type { ConsumeMessage } from 'amqplib';

const HELP: Record<string, string> = {
  main: `usage: postage <command> [options]

commands:
  ping [ADDRESS]                        list the components that answer a ping
  describe ADDRESS | EXCHANGE KEY       what a processor is, listens to and handles
  run MODULE                            start the processors a module exports
  send EXCHANGE KEY NAME [JSON]         send MessageCommand(NAME, JSON), confirmed
  rpc EXCHANGE KEY NAME [JSON]          call RpcCommand(NAME, JSON) and print the result's value
  watch EXCHANGE [KEY]                  print the envelopes that pass on EXCHANGE
  errors list|show|replay|purge         inspect an error queue, send failed messages back
  graph [--format mermaid|dot|svg]      the topology the running components make
  dashboard [--port N]                  a live page of the system, on http://127.0.0.1 (with a token)
  asyncapi [MODULE] [--format yaml|json] the AsyncAPI 3.0 document of a module's components, or of the fleet

The broker comes from POSTAGE_URL or POSTAGE_HOST/PORT/USER/PASSWORD/VHOST.
Run 'postage help <command>' (or 'postage <command> --help') for a command's
options; 'postage --version' prints the version.
Exit codes: 0 done, 1 the remote side failed, 2 bad usage, 3 broker unreachable
or refused, 4 unroutable (no queue took the message). Failures are one line on
stderr; library logs go to stderr too (POSTAGE_LOG_LEVEL, default error).`,
  ping: `usage: postage ping [ADDRESS] [--timeout SECONDS]

Broadcasts the ping RPC and lists every component that answers under a
header, one a line: NAME TYPE PID@HOST USER VHOST. ADDRESS is a component's
address (NAME, @HOST, NAME@HOST, PID@HOST; NAME#GROUP for GenericApplications);
without it every component is asked through 'presence'. Waits --timeout seconds (default 2) for answers.
Exits 1 when nobody answers.`,
  describe: `usage: postage describe ADDRESS [--timeout SECONDS] [--json]
       postage describe EXCHANGE KEY [--timeout SECONDS] [--json]

Asks processors the built-in describe RPC and prints, for each that answers,
its fingerprint and library version, its bindings (exchange, key, queue),
and a table of its handlers: KIND CATEGORY TYPE NAME SCHEMA DESCRIPTION.
ADDRESS is a component's address (NAME, NAME@HOST, PID@HOST; NAME/rr and
NAME#GROUP… for GenericApplications): every component it reaches answers
within --timeout seconds (default 2). EXCHANGE KEY asks the one processor behind them. --json prints
the descriptions as one JSON array. Exits 1 when nobody answers; with
EXCHANGE KEY, 4 when no queue takes the question.`,
  run: `usage: postage run MODULE

Loads MODULE (.js, or .ts where tsx is installed) and starts every
MessageProcessor (and MicroThread) it exports, and every processor class
whose constructor needs no arguments, under one scheduler with the POSTAGE_*
configuration. Prints one line per component once all are ready, then runs
until they stop: SIGTERM or SIGINT closes them gracefully (handlers in flight
finish and are acked; a second signal ends at once), as does a quit command.
Exits 0 once they closed, 1 when one crashed, 2 when the module cannot be
loaded or exports nothing to run, 3 when the broker cannot be reached.`,
  send: `usage: postage send EXCHANGE KEY NAME [JSON]

Sends MessageCommand(NAME, JSON) to EXCHANGE with routing key KEY, waits
for the broker's confirm and prints one line saying so. JSON is an object of
parameters (default {}). The exchange must exist. Exits 4 when no queue is
bound to EXCHANGE with KEY (the broker returned the message).`,
  rpc: `usage: postage rpc EXCHANGE KEY NAME [JSON] [--timeout SECONDS] [--retries N] [--envelope]

Calls RpcCommand(NAME, JSON) on EXCHANGE with routing key KEY and prints the
result's value as JSON (--envelope: the whole result envelope). Waits
--timeout seconds (default 5) per attempt, sends again up to --retries times
(default 0). An error or exception result (a timeout included) is one line on
stderr and exit 1; exit 4 when no queue takes the call.`,
  watch: `usage: postage watch EXCHANGE [KEY] [--count N] [--envelope]

Binds a temporary queue to EXCHANGE with KEY (default '#', which matches
everything on a topic exchange; give the key for a direct exchange) and prints
each message as one JSON line: where it went (routingKey), its message id,
conversation and causation ids, correlation id, type, timestamp and headers,
and its envelope (--envelope: the envelope alone). Stops after --count
messages, or on Ctrl-C.`,
};

HELP.errors = ERRORS_HELP;
HELP.graph = GRAPH_HELP;
HELP.dashboard = DASHBOARD_HELP;
HELP.asyncapi = ASYNCAPI_HELP;

const fingerprint = { name: 'postage-cli', type: 'cli' };

function parseJson(text: string | undefined): Record<string, unknown> {
  if (text === undefined) return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new UsageError(`JSON parameters are not valid JSON: ${text}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new UsageError('JSON parameters must be an object, e.g. \'{"text": "hi"}\'');
  return v as Record<string, unknown>;
}

function seconds(v: string | undefined, fallback: number, flag: string): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--${flag} must be a positive number of seconds, not '${v}'`);
  return n;
}

const existing = (name: string): ExchangeObject => ({ name, type: 'direct', passive: true });

async function producerFor(exchange: ExchangeObject, key: string): Promise<Producer<GenericProducer>> {
  class CliProducer extends GenericProducer {
    static override eks = [[exchange, key] as const];
  }
  try {
    return await CliProducer.create({ fingerprint, waitForBrokerMs: 0 });
  } catch (err) {
    if (/NOT_FOUND/.test(String((err as Error).message)))
      throw new UsageError(`exchange '${exchange.name}' does not exist on this broker`);
    throw err;
  }
}

async function ping(args: string[], values: Record<string, string | boolean | undefined>): Promise<number> {
  const address = args[0];
  const timeout = seconds(values.timeout as string | undefined, 2, 'timeout');
  const onPresence = address === undefined || address.startsWith('presence');
  const exchange = onPresence ? PresenceExchange : GenericApplicationExchange;
  class Pinger extends GenericProducer {
    static override eks = [[exchange, address ?? 'presence'] as const];
  }
  const p = await Pinger.create({ fingerprint, waitForBrokerMs: 0 });
  try {
    const queue = (await p.rpc_ping({}, { _queue_only: true })) as string;
    const replies = await p.consumeRpc(queue, { resultLen: Number.MAX_SAFE_INTEGER, timeout });
    const found = replies.filter((r) => r.ok).map((r) => r.body.content.value as FingerprintDict);
    if (found.length > 0)
      console.log(
        table(
          ['NAME', 'TYPE', 'PID@HOST', 'USER', 'VHOST'],
          found.map((f) => [f.name, f.type, `${f.pid}@${f.host}`, f.user, f.vhost]),
        ),
      );
    if (found.length === 0)
      console.error(
        `no component answered a ping on ${exchange.name}/${address ?? 'presence'} within ${timeout} s: ` +
          whyNoneAnswered(),
      );
    return found.length > 0 ? 0 : 1;
  } finally {
    await p.close();
  }
}

async function describe(args: string[], values: Record<string, string | boolean | undefined>): Promise<number> {
  if (args.length === 0 || args.length > 2) throw new UsageError('describe needs ADDRESS, or EXCHANGE KEY');
  const timeout = seconds(values.timeout as string | undefined, 2, 'timeout');
  let found: ProcessorDescription[];
  let where: string;
  if (args.length === 2) {
    const [exchange, key] = args;
    where = `${exchange}/${key}`;
    const p = await producerFor(existing(exchange), key);
    try {
      const r = await p.rpc_describe({}, { _timeout: timeout, _max_retry: 0 });
      found = r.ok ? [r.body.content.value as ProcessorDescription] : [];
    } finally {
      await p.close();
    }
  } else {
    const address = args[0];
    where = `${GenericApplicationExchange.name}/${address}`;
    class Asker extends GenericProducer {
      static override eks = [[GenericApplicationExchange, address] as const];
    }
    const p = await Asker.create({ fingerprint, waitForBrokerMs: 0 });
    try {
      // Every component behind the address answers into one reply queue (as for ping).
      const queue = (await p.rpc_describe({}, { _queue_only: true })) as string;
      const replies = await p.consumeRpc(queue, {
        resultLen: address.endsWith('/rr') ? 1 : Number.MAX_SAFE_INTEGER,
        timeout,
      });
      found = replies.filter((r) => r.ok).map((r) => r.body.content.value as ProcessorDescription);
    } finally {
      await p.close();
    }
  }
  if (found.length === 0) {
    // Behind EXCHANGE KEY is one processor's own queue: presence has nothing to do with it.
    console.error(
      `no processor answered describe on ${where} within ${timeout} s` +
        (args.length === 1 ? `: ${whyNoneAnswered()}` : ''),
    );
    return 1;
  }
  if (values.json) {
    console.log(JSON.stringify(found));
    return 0;
  }
  console.log(
    found
      .map((d) => {
        const f = d.fingerprint;
        const head = `${f.name} (${f.type}) ${f.pid}@${f.host} vhost ${f.vhost}, ${d.library.name} ${d.library.version}`;
        const bindings = d.bindings
          .map((b) => `  ${b.exchange || '(default exchange)'} / ${b.key} -> ${b.queue}`)
          .join('\n');
        const handlers = table(
          ['KIND', 'CATEGORY', 'TYPE', 'NAME', 'SCHEMA', 'DESCRIPTION'],
          d.handlers.map((h) => [h.kind, h.category, h.type, h.name, h.schema ? 'yes' : '-', h.description ?? '']),
        );
        const partitions = (d.partitions ?? []).map((p) => describePartitions(p, f)).join('\n');
        return `${head}\nbindings:\n${bindings || '  (none)'}\n${partitions ? `partitions:\n${partitions}\n` : ''}${handlers}`;
      })
      .join('\n\n'),
  );
  return 0;
}

/**
 * One partitioned queue as `describe` prints it: every replica the answering one knows of and the partitions each
 * has (or idle), then the messages waiting in each partition.
 */
function describePartitions(p: PartitionsDescription, f: ProcessorDescription['fingerprint']): string {
  const head = `  ${p.queue}: ${p.partitions.length} partitions (${p.partitions.join(', ')}); active here: ${
    p.activeHere.join(', ') || 'none'
  }`;
  const lines = [head];
  if (p.rebalance) {
    lines.push(`    spread over ${p.replicas.length} replica${p.replicas.length === 1 ? '' : 's'}:`);
    for (const r of p.replicas) {
      const self = r.id === p.replica ? ' (this one)' : '';
      lines.push(`      ${r.pid}@${r.host} ${r.id}${self}: ${r.partitions.join(', ') || 'idle'}`);
    }
  } else
    lines.push(
      `    not spread (rebalance: false): the broker keeps the first replica active; ${f.pid}@${f.host} is one`,
    );
  if (p.waiting) lines.push(`    waiting: ${p.partitions.map((n) => `${n} ${p.waiting?.[n] ?? 0}`).join(', ')}`);
  return lines.join('\n');
}

async function send(args: string[]): Promise<number> {
  const [exchange, key, name, json] = args;
  if (!exchange || key === undefined || !name) throw new UsageError('send needs EXCHANGE KEY NAME [JSON]');
  const params = parseJson(json);
  const p = await producerFor(existing(exchange), key);
  try {
    await p.forward(new MessageCommand(name, params).setFingerprint(p.fingerprint).body);
    console.log(`sent command '${name}' to ${exchange}/${key} (confirmed by the broker)`);
    return 0;
  } finally {
    await p.close();
  }
}

async function rpc(args: string[], values: Record<string, string | boolean | undefined>): Promise<number> {
  const [exchange, key, name, json] = args;
  if (!exchange || key === undefined || !name) throw new UsageError('rpc needs EXCHANGE KEY NAME [JSON]');
  const params = parseJson(json);
  const timeout = seconds(values.timeout as string | undefined, 5, 'timeout');
  const retries = values.retries === undefined ? 0 : Number(values.retries);
  if (!Number.isInteger(retries) || retries < 0)
    throw new UsageError(`--retries must be a whole number, not '${values.retries}'`);
  const p = await producerFor(existing(exchange), key);
  try {
    // No builder of that name exists, so rpc_NAME sends RpcCommand(NAME, params).
    const r = await p[`rpc_${name}`](params, { _timeout: timeout, _max_retry: retries });
    if (values.envelope) console.log(JSON.stringify(r.body));
    else if (r.ok) console.log(JSON.stringify(r.body.content.value ?? null));
    if (!r.ok) {
      const c = r.body.content;
      console.error(`postage: rpc ${name} failed: ${c.type === 'exception' ? `${String(c.value)}: ` : ''}${c.message}`);
    }
    return r.ok ? 0 : 1;
  } finally {
    await p.close();
  }
}

async function watch(args: string[], values: Record<string, string | boolean | undefined>): Promise<number> {
  const [exchange, key = '#'] = args;
  if (!exchange) throw new UsageError('watch needs EXCHANGE [KEY]');
  const count = values.count === undefined ? Infinity : Number(values.count);
  if (!(count > 0)) throw new UsageError(`--count must be a positive number, not '${values.count}'`);
  const conn = await openConnection({ connectionName: 'postage-cli watch' });
  const ch = await openChannel(conn);
  let channelError: Error | undefined;
  ch.on('error', (e: Error) => (channelError = e));
  const decoder = new JsonEncoder();
  try {
    await ch.checkExchange(exchange).catch(() => {
      throw new UsageError(`exchange '${exchange}' does not exist on this broker`);
    });
    // '#' is a topic pattern: on a direct exchange it is a key like any other, and the watch would stay silent.
    if (args[1] === undefined && (await exchangeType(conn, exchange)) === 'direct') {
      throw new UsageError(
        `exchange '${exchange}' is direct: the default key '#' would only match messages sent with the key '#', so nothing would show. Give the key to watch: postage watch ${exchange} KEY`,
      );
    }
    const { queue } = await ch.assertQueue('', { exclusive: true, autoDelete: true });
    await ch.bindQueue(queue, exchange, key);
    console.error(`watching ${exchange} with key '${key}' (Ctrl-C to stop)`);
    let seen = 0;
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      void ch.consume(
        queue,
        (m) => {
          if (!m) return resolve();
          let envelope: unknown;
          try {
            envelope = decoder.decode(m.content);
          } catch {
            envelope = { undecodable: m.content.toString('base64') };
          }
          console.log(JSON.stringify(values.envelope ? envelope : { ...described(m), envelope }));
          if (++seen >= count) resolve();
        },
        { noAck: true },
      );
    });
    return 0;
  } finally {
    if (!channelError) await ch.close().catch(() => undefined);
    await conn.close().catch(() => undefined);
  }
}

/**
 * An exchange's type, which AMQP has no method to read: redeclaring it as a
 * topic exchange (on a channel of its own, which a refusal closes) succeeds
 * for a topic one and is refused, naming the current type, for any other.
 */
async function exchangeType(
  conn: Awaited<ReturnType<typeof openConnection>>,
  exchange: string,
): Promise<string | undefined> {
  const probe = await openChannel(conn);
  probe.on('error', () => undefined);
  try {
    await probe.checkExchange(exchange);
    await probe.assertExchange(exchange, 'topic', { durable: true });
    return 'topic';
  } catch (err) {
    // "inequivalent arg 'type' … received 'topic' but current is 'direct'"; a refusal for another field means the type
    // matched.
    const m = /arg 'type'.*current is '(\w+)'/.exec(String((err as Error).message));
    return m ? m[1] : 'topic';
  } finally {
    await probe.close().catch(() => undefined);
  }
}

/**
 * What `watch` shows of a message besides its envelope: its AMQP properties, as a handler's currentDelivery() has them.
 */
function described(m: ConsumeMessage): Record<string, unknown> {
  const d = deliveryInfo(m);
  const headers = Object.fromEntries(
    Object.entries(d.headers).map(([k, v]) => [k, Buffer.isBuffer(v) ? v.toString('base64') : v]),
  );
  return {
    routingKey: d.routingKey,
    messageId: d.messageId,
    conversationId: d.conversationId,
    causationId: d.causationId,
    correlationId: d.correlationId,
    type: d.type,
    timestamp: d.timestamp?.toISOString(),
    headers,
  };
}

/** Columns padded to their widest cell, under a header. */
function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  return [header, ...rows]
    .map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  '))
    .join('\n');
}

/** Every option any command takes (parseArgs refuses the rest by name). */
const CLI_OPTIONS = {
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
  timeout: { type: 'string' },
  retries: { type: 'string' },
  count: { type: 'string' },
  envelope: { type: 'boolean' },
  json: { type: 'boolean' },
  group: { type: 'boolean' },
  all: { type: 'boolean' },
  error: { type: 'string' },
  name: { type: 'string' },
  'dry-run': { type: 'boolean' },
  yes: { type: 'boolean', short: 'y' },
  format: { type: 'string' },
  port: { type: 'string' },
  host: { type: 'string' },
  'allow-host': { type: 'string', multiple: true },
} as const;

export async function main(argv: string[]): Promise<number> {
  // The CLI speaks through its output and exit code; library logs only at the user's request, and never on stdout.
  // `run` hosts components: their logs keep their usual level (POSTAGE_LOG_LEVEL, info by default).
  if (argv[0] !== 'run') process.env.POSTAGE_LOG_LEVEL ??= 'error';
  configureLogging({ destination: pino.destination({ dest: 2, sync: true }) });
  let parsed: ReturnType<
    typeof parseArgs<{ args: string[]; allowPositionals: true; strict: true; options: typeof CLI_OPTIONS }>
  >;
  const target = takeReplayTarget(argv);
  argv = target.argv;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: CLI_OPTIONS,
    });
  } catch (err) {
    // One line that names the option and where to look, not Node's paragraph.
    const bad = /'([^']+)'/.exec((err as Error).message)?.[1];
    const where = argv.find((a) => !a.startsWith('-'));
    throw new UsageError(
      `${bad ? `unknown option '${bad}'` : (err as Error).message.split('\n')[0]}: see postage help${where && where in HELP ? ` ${where}` : ''}`,
    );
  }
  // The one option that may repeat, kept apart so every other is a plain string or flag.
  const {
    values: { 'allow-host': allowHosts = [], ...values },
    positionals,
  } = parsed;
  if (values.version) {
    console.log(VERSION);
    return 0;
  }
  const [command, ...args] = positionals;
  // `postage help CMD` is `postage CMD --help`.
  if (command === 'help') {
    const topic = args[0];
    if (topic === undefined) {
      console.log(HELP.main);
      return 0;
    }
    if (!(topic in HELP) || topic === 'main')
      throw new UsageError(
        `no help for '${topic}': the commands are ping, describe, run, send, rpc, watch, errors, graph, dashboard and asyncapi`,
      );
    console.log(HELP[topic as keyof typeof HELP]);
    return 0;
  }
  if (!command) {
    console.log(HELP.main);
    return values.help ? 0 : 2;
  }
  if (!(command in HELP) || command === 'main')
    throw new UsageError(
      `unknown command '${command}': use ping, describe, run, send, rpc, watch, errors, graph, dashboard or asyncapi (postage --help)`,
    );
  if (values.help) {
    console.log(HELP[command]);
    return 0;
  }
  if (command === 'ping') return ping(args, values);
  if (command === 'describe') return describe(args, values);
  if (command === 'run') {
    if (args.length !== 1) throw new UsageError('run needs MODULE');
    // The launcher runs the module in a child it owns (restarts happen there); the child runs it.
    if (process.env[SUPERVISED] === '1') return runModule(args[0]);
    return superviseModule(fileURLToPath(import.meta.url), args[0]);
  }
  if (command === 'send') return send(args);
  if (command === 'rpc') return rpc(args, values);
  if (command === 'errors') return errors(args, values, target.to, table);
  if (command === 'graph') return graph(values, seconds);
  if (command === 'dashboard') return dashboard(values, allowHosts);
  if (command === 'asyncapi') return asyncapi(args, values, seconds);
  return watch(args, values);
}

/**
 * Ends the process with `code` once stdout and stderr have written everything: to a pipe they write asynchronously,
 * and `process.exit` at once would cut what a slow reader (`| jq`, `| less`) has not taken yet.
 */
async function finish(code: number): Promise<never> {
  process.exitCode = code;
  const drained = (stream: NodeJS.WriteStream) =>
    new Promise<void>((resolve) => {
      if (stream.destroyed || !stream.writable) return resolve();
      // The callback of an empty write runs once everything written before it is out (or the stream failed).
      stream.write('', () => resolve());
    });
  await Promise.all([drained(process.stdout), drained(process.stderr)]);
  // Exits even where a library handle (a socket closing, a timer) would keep the loop alive a while.
  process.exit(code);
}

// A reader that stops early (`| head`) closes the pipe: the rest is not wanted, which is no failure of ours.
for (const stream of [process.stdout, process.stderr])
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });

main(process.argv.slice(2)).then(
  (code) => finish(code),
  (err: unknown) => {
    const e = err as Error & { code?: string };
    // One line, no stack: scripts read the exit code, people read the line.
    console.error(`postage: ${e.message}`);
    const usage =
      err instanceof UsageError ||
      err instanceof ConfigError ||
      e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ||
      e.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL' ||
      e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE';
    return finish(usage ? 2 : err instanceof BrokerError ? (err.code === 'UNROUTABLE' ? 4 : 3) : 1);
  },
);

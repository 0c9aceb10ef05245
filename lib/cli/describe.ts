/** `postage describe`: what a processor is, listens to and handles. */
import { GenericApplicationExchange } from '../application/generic_application.js';
import type { ProcessorDescription } from '../receive/description.js';
import type { PartitionsDescription } from '../receive/partitions/spread.js';
import { GenericProducer } from '../send/producer.js';
import { whyNoneAnswered } from '../operations/directory.js';
import { type Command, seconds, table, type Values } from './command.js';
import { existing, fingerprint, producerFor } from './remote.js';
import { UsageError } from './usage.js';

export const describeCommand: Command = {
  name: 'describe',
  synopsis: 'describe ADDRESS | EXCHANGE KEY',
  summary: 'what a processor is, listens to and handles',
  help: `usage: postage describe ADDRESS [--timeout SECONDS] [--json]
       postage describe EXCHANGE KEY [--timeout SECONDS] [--json]

Asks processors the built-in describe RPC and prints, for each that answers,
its fingerprint and library version, its bindings (exchange, key, queue),
and a table of its handlers: KIND CATEGORY TYPE NAME SCHEMA DESCRIPTION.
ADDRESS is a component's address (NAME, NAME@HOST, PID@HOST; NAME/rr and
NAME#GROUP… for GenericApplications): every component it reaches answers
within --timeout seconds (default 2). EXCHANGE KEY asks the one processor behind them. --json prints
the descriptions as one JSON array. Exits 1 when nobody answers; with
EXCHANGE KEY, 4 when no queue takes the question.`,
  options: { timeout: { type: 'string' }, json: { type: 'boolean' } },
  run: ({ args, values }) => describe(args, values),
};

async function describe(args: string[], values: Values): Promise<number> {
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
        const library = `${d.library.name} ${d.library.version}`;
        const head = `${f.name} (${f.type}) ${f.pid}@${f.host} vhost ${f.vhost}, ${library}`;
        const bindings = d.bindings
          .map((b) => `  ${b.exchange || '(default exchange)'} / ${b.key} -> ${b.queue}`)
          .join('\n');
        const handlers = table(
          ['KIND', 'CATEGORY', 'TYPE', 'NAME', 'SCHEMA', 'DESCRIPTION'],
          d.handlers.map((h) => [h.kind, h.category, h.type, h.name, h.schema ? 'yes' : '-', h.description ?? '']),
        );
        const partitions = (d.partitions ?? []).map((p) => describePartitions(p, f)).join('\n');
        const spread = partitions ? `partitions:\n${partitions}\n` : '';
        return `${head}\nbindings:\n${bindings || '  (none)'}\n${spread}${handlers}`;
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
  const moving = [
    p.lettingGo?.length ? `; letting go (finishing what it holds): ${p.lettingGo.join(', ')}` : '',
    p.standbyHere?.length ? `; standby (another replica lets go): ${p.standbyHere.join(', ')}` : '',
  ].join('');
  const head = `  ${p.queue}: ${p.partitions.length} partitions (${p.partitions.join(', ')}); active here: ${
    p.activeHere.join(', ') || 'none'
  }${moving}`;
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

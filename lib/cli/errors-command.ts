import { createInterface } from 'node:readline/promises';
import { BrokerError } from '../errors.js';
import { ComponentDirectory } from '../operations/directory.js';
import {
  ErrorQueue,
  groupFailed,
  printableHeaders,
  selects,
  headerText,
  type FailedMessage,
  type FailedSelection,
} from '../operations/error-queue.js';
import { UsageError } from './usage.js';
import { type Command, table } from './command.js';

export const ERRORS_HELP = `usage: postage errors list [QUEUE] [--group] [--json]
       postage errors show QUEUE ID [--json]
       postage errors replay QUEUE (ID... | --all | --error NAME | --name NAME) [--to EXCHANGE [KEY]] [--dry-run]
       postage errors purge QUEUE (ID... | --all | --error NAME | --name NAME) [--yes]

Works on an error queue: where a processor's errorExchange puts the messages
that failed for good, with why (x-error-name, x-error-message), where they
came from (x-original-exchange, x-original-routing-key) and x-attempts.

list     one line each, oldest first: WHEN MESSAGE ORIGIN ERROR ATTEMPTS ID.
         Without QUEUE, the error queues the running components report
         through describe. --group counts them by error and message name.
show     one message whole: headers, envelope, validation issues.
replay   sends each selected message back where it came from (--to: to
         EXCHANGE, with KEY or its own routing key), confirmed by the broker
         before it leaves the error queue; the copy keeps its message id and
         conversation, and counts x-replayed. --dry-run lists what would go.
purge    removes the selected messages; asks first unless --yes.
Selections combine: --error TypeError --name resize takes those that are both.
Reading changes nothing: every message is taken unacked and given back, in
its place, when the command ends. Replay and purge work in batches of 100,
settling each before taking more, through what the queue held when they
began. Each command locks the queue while it works (an exclusive queue named
QUEUE.lock, gone with its connection): a second one is refused, and list
reads anyway and says the queue is locked (what the other tool holds is not
shown). purge asks on stdin; input that ends unanswered is a no.
Exit codes: 0 done, 1 nothing matched (or purge not confirmed), 2 bad usage,
3 broker unreachable, or another tool is working on the queue, 4 a selected
message was not replayed (no queue at its destination, a destination header
that is not a string, an exchange that is gone, or another reader held it):
it stays in the error queue.`;

type Values = Record<string, string | boolean | undefined>;

/** `--to EXCHANGE [KEY]`: two words after one flag, which parseArgs cannot take; taken out of argv before it parses. */
export function takeReplayTarget(argv: string[]): { argv: string[]; to?: { exchange: string; routingKey?: string } } {
  const i = argv.indexOf('--to');
  if (i === -1 || argv[0] !== 'errors') return { argv };
  const exchange = argv[i + 1];
  if (exchange === undefined || exchange.startsWith('-')) throw new UsageError('--to needs EXCHANGE [KEY]');
  const key = argv[i + 2];
  const hasKey = key !== undefined && !key.startsWith('-');
  const rest = [...argv.slice(0, i), ...argv.slice(i + (hasKey ? 3 : 2))];
  return { argv: rest, to: { exchange, ...(hasKey ? { routingKey: key } : {}) } };
}

function selection(ids: string[], values: Values): FailedSelection {
  const sel: FailedSelection = { ids, all: values.all === true };
  if (typeof values.error === 'string') sel.errorName = values.error;
  if (typeof values.name === 'string') sel.messageName = values.name;
  if (ids.length === 0 && !sel.all && sel.errorName === undefined && sel.messageName === undefined)
    throw new UsageError('say which messages: ID..., --all, --error NAME or --name NAME');
  return sel;
}

/** Opens the error queue `queue` for `work`, and closes it after. */
async function withQueue<T>(queue: string, work: (eq: ErrorQueue) => Promise<T>): Promise<T> {
  let eq: ErrorQueue;
  try {
    eq = await ErrorQueue.open(queue, { waitForBrokerMs: 0 });
  } catch (err) {
    if (err instanceof BrokerError && err.code === 'NOT_FOUND')
      throw new UsageError(
        `${err.message}: postage errors list (without QUEUE) names the error queues of the running components`,
      );
    throw err;
  }
  try {
    return await work(eq);
  } finally {
    await eq.close();
  }
}

/** The error queues the running components name in their describe (every GenericApplication, through 'presence'). */
async function reportedErrorQueues(timeout: number): Promise<string[]> {
  const directory = await ComponentDirectory.open({ waitForBrokerMs: 0 });
  try {
    const names = (await directory.describeAll(timeout)).map((d) => d.errorQueue);
    return [...new Set(names.filter((n): n is string => typeof n === 'string'))];
  } finally {
    await directory.close();
  }
}

function line(m: FailedMessage): string[] {
  const short = m.errorMessage && m.errorMessage.length > 60 ? `${m.errorMessage.slice(0, 59)}…` : m.errorMessage;
  const error = `${m.errorName}${short ? `: ${short}` : ''}`;
  return [
    // A header that is not a date is shown as it is.
    m.failedAt?.toISOString() ?? headerText(m.headers['x-failed-at']) ?? '-',
    `${m.messageType ?? '?'}/${m.messageName ?? '?'}`,
    `${m.originalExchange || '(default)'}/${m.originalRoutingKey}`,
    error,
    String(m.attempts ?? '-'),
    m.id,
  ];
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * A body that is not JSON as text, where its content type says it is text (a CloudEvent's `text/plain` data, XML) and
 * its bytes are UTF-8: what a reader can read, beside the exact bytes in Base64.
 */
function contentText(m: FailedMessage): string | undefined {
  const type = headerText(m.properties.contentType) ?? '';
  if (!/^text\/|[/+]xml\b/i.test(type)) return undefined;
  try {
    return utf8.decode(m.content);
  } catch {
    return undefined;
  }
}

function asJson(m: FailedMessage, queue: string): Record<string, unknown> {
  const { content, headers, ...rest } = m;
  const text = m.envelope === undefined ? contentText(m) : undefined;
  return {
    queue,
    ...rest,
    headers: printableHeaders(headers),
    ...(m.envelope === undefined ? { contentBase64: content.toString('base64') } : {}),
    ...(text !== undefined ? { contentText: text } : {}),
  };
}

export async function errors(
  args: string[],
  values: Values,
  to: { exchange: string; routingKey?: string } | undefined,
  table: (h: string[], rows: string[][]) => string,
): Promise<number> {
  const [sub, queue, ...ids] = args;
  if (sub === 'list') {
    if (ids.length > 0) throw new UsageError('errors list takes one QUEUE at most');
    const queues = queue !== undefined ? [queue] : await reportedErrorQueues(2);
    if (queues.length === 0)
      throw new UsageError('no running component reports an error queue: name one, postage errors list QUEUE');
    const lists = new Map<string, FailedMessage[]>();
    for (const q of queues) {
      const view = await withQueue(q, (eq) => eq.inspect());
      lists.set(q, view.messages);
      if (view.locked)
        console.error(
          `postage: another tool (postage errors or a dashboard) is working on ${q}: ` +
            `what it holds is not listed, so ${view.messages.length} may be only part of the queue`,
        );
    }
    const all = [...lists].flatMap(([q, list]) => list.map((m) => ({ queue: q, m })));
    if (values.group) {
      // Most first over every queue listed, as each queue's own groups are.
      const groups = [...lists]
        .flatMap(([q, list]) => groupFailed(list).map((g) => ({ queue: q, ...g })))
        .sort((a, b) => b.count - a.count || a.errorName.localeCompare(b.errorName));
      if (values.json) console.log(JSON.stringify(groups));
      else if (groups.length > 0)
        console.log(
          table(
            ['QUEUE', 'ERROR', 'MESSAGE', 'COUNT'],
            groups.map((g) => [g.queue, g.errorName, g.messageName, String(g.count)]),
          ),
        );
    } else if (values.json) console.log(JSON.stringify(all.map(({ queue: q, m }) => asJson(m, q))));
    else if (all.length > 0)
      console.log(
        table(
          ['WHEN', 'MESSAGE', 'ORIGIN', 'ERROR', 'ATTEMPTS', 'ID'].concat(queues.length > 1 ? ['QUEUE'] : []),
          all.map(({ queue: q, m }) => line(m).concat(queues.length > 1 ? [q] : [])),
        ),
      );
    if (all.length === 0) console.error(`no failed messages in ${queues.join(', ')}`);
    return 0;
  }
  if (sub === 'show') {
    if (queue === undefined || ids.length !== 1) throw new UsageError('errors show needs QUEUE ID');
    const view = await withQueue(queue, (eq) => eq.inspect());
    const m = view.messages.find((x) => x.id === ids[0]);
    if (!m) {
      const held = view.locked ? ', or another tool working on the queue holds it: try again once it is done' : '';
      console.error(`no message ${ids[0]} in ${queue} (postage errors list ${queue} shows the ids)${held}`);
      return 1;
    }
    console.log(JSON.stringify(asJson(m, queue), null, values.json ? undefined : 2));
    return 0;
  }
  if (sub === 'replay') {
    if (queue === undefined) throw new UsageError('errors replay needs QUEUE and a selection');
    const sel = selection(ids, values);
    const r = await withQueue(queue, (eq) => eq.replay(sel, { to, dryRun: values['dry-run'] === true }));
    const where = (m: FailedMessage) =>
      `${to?.exchange ?? (m.originalExchange || '(default)')}/${to?.routingKey ?? m.originalRoutingKey}`;
    for (const m of r.wouldReplay)
      console.log(
        `would replay ${m.id} (${m.messageType ?? '?'}/${m.messageName ?? '?'}, ${m.errorName}) to ${where(m)}`,
      );
    for (const m of r.replayed) console.log(`replayed ${m.id} to ${where(m)}`);
    for (const m of r.unroutable)
      console.error(`postage: ${m.id} not replayed: no queue is bound at ${where(m)} (it stays in ${queue})`);
    for (const { message, reason } of r.refused)
      console.error(`postage: ${message.id} not replayed: ${reason} (it stays in ${queue})`);
    if (r.notTaken > 0)
      console.error(
        `postage: ${r.notTaken} message(s) ${queue} counted when the replay began could not be taken: ` +
          'another reader holds them unacked; run the replay again once it is done',
      );
    const any = r.replayed.length + r.wouldReplay.length + r.unroutable.length + r.refused.length;
    if (any === 0 && r.notTaken === 0) console.error(`nothing in ${queue} matches`);
    if (r.unroutable.length + r.refused.length + r.notTaken > 0) return 4;
    return any === 0 ? 1 : 0;
  }
  if (sub === 'purge') {
    if (queue === undefined) throw new UsageError('errors purge needs QUEUE and a selection');
    const sel = selection(ids, values);
    return withQueue(queue, async (eq) => {
      if (values.yes !== true) {
        const chosen = (await eq.list()).filter((m) => selects(sel, m));
        if (chosen.length === 0) {
          console.error(`nothing in ${queue} matches`);
          return 1;
        }
        // Nothing is held while it asks (list gave everything back), and input that ends unanswered is a no.
        const rl = createInterface({ input: process.stdin, output: process.stderr });
        const answer = await new Promise<string>((resolve) => {
          rl.once('close', () => resolve(''));
          rl.question(`remove ${chosen.length} message(s) from ${queue} for good? [y/N] `).then(resolve, () =>
            resolve(''),
          );
        });
        rl.close();
        if (!/^y(es)?$/i.test(answer.trim())) {
          console.error('nothing purged');
          return 1;
        }
      }
      const gone = await eq.purge(sel);
      for (const m of gone) console.log(`purged ${m.id}`);
      if (gone.length === 0) console.error(`nothing in ${queue} matches`);
      return gone.length === 0 ? 1 : 0;
    });
  }
  throw new UsageError(`errors needs list, show, replay or purge, not '${sub ?? ''}': see postage help errors`);
}

export const errorsCommand: Command = {
  name: 'errors',
  synopsis: 'errors list|show|replay|purge',
  summary: 'inspect an error queue, send failed messages back',
  help: ERRORS_HELP,
  options: {
    group: { type: 'boolean' },
    json: { type: 'boolean' },
    all: { type: 'boolean' },
    error: { type: 'string' },
    name: { type: 'string' },
    'dry-run': { type: 'boolean' },
    yes: { type: 'boolean', short: 'y' },
  },
  run: ({ args, values, replayTo }) => errors(args, values, replayTo, table),
};

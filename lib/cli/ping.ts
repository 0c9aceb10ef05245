/** `postage ping`: who answers, on presence or at an address. */
import { GenericApplicationExchange, PresenceExchange } from '../application/generic_application.js';
import type { FingerprintDict } from '../envelope/fingerprint.js';
import { GenericProducer } from '../send/producer.js';
import { whyNoneAnswered } from '../operations/directory.js';
import { type Command, seconds, table, type Values } from './command.js';
import { fingerprint } from './remote.js';

export const pingCommand: Command = {
  name: 'ping',
  synopsis: 'ping [ADDRESS]',
  summary: 'list the components that answer a ping',
  help: `usage: postage ping [ADDRESS] [--timeout SECONDS]

Broadcasts the ping RPC and lists every component that answers under a
header, one a line: NAME TYPE PID@HOST USER VHOST. ADDRESS is a component's
address (NAME, @HOST, NAME@HOST, PID@HOST; NAME#GROUP for GenericApplications);
without it every component is asked through 'presence'. Waits --timeout seconds (default 2) for answers.
Exits 1 when nobody answers.`,
  options: { timeout: { type: 'string' } },
  run: ({ args, values }) => ping(args, values),
};

async function ping(args: string[], values: Values): Promise<number> {
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

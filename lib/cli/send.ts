/** `postage send`: one command, confirmed by the broker. */
import { MessageCommand } from '../envelope/messages.js';
import type { Command } from './command.js';
import { existing, parseJson, producerFor } from './remote.js';
import { UsageError } from './usage.js';

export const sendCommand: Command = {
  name: 'send',
  synopsis: 'send EXCHANGE KEY NAME [JSON]',
  summary: 'send MessageCommand(NAME, JSON), confirmed',
  help: `usage: postage send EXCHANGE KEY NAME [JSON]

Sends MessageCommand(NAME, JSON) to EXCHANGE with routing key KEY, waits
for the broker's confirm and prints one line saying so. JSON is an object of
parameters (default {}). The exchange must exist. Exits 4 when no queue is
bound to EXCHANGE with KEY (the broker returned the message).`,
  options: {},
  run: ({ args }) => send(args),
};

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

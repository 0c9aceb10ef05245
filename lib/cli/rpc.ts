/** `postage rpc`: call a component and print what it answers. */
import { type Command, seconds, type Values } from './command.js';
import { existing, parseJson, producerFor } from './remote.js';
import { UsageError } from './usage.js';

export const rpcCommand: Command = {
  name: 'rpc',
  synopsis: 'rpc EXCHANGE KEY NAME [JSON]',
  summary: "call RpcCommand(NAME, JSON) and print the result's value",
  help: `usage: postage rpc EXCHANGE KEY NAME [JSON] [--timeout SECONDS] [--retries N] [--envelope]

Calls RpcCommand(NAME, JSON) on EXCHANGE with routing key KEY and prints the
result's value as JSON (--envelope: the whole result envelope). Waits
--timeout seconds (default 5) per attempt, sends again up to --retries times
(default 0). An error or exception result (a timeout included) is one line on
stderr and exit 1; exit 4 when no queue takes the call.`,
  options: { timeout: { type: 'string' }, retries: { type: 'string' }, envelope: { type: 'boolean' } },
  run: ({ args, values }) => rpc(args, values),
};

async function rpc(args: string[], values: Values): Promise<number> {
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

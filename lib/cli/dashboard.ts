import { startDashboard } from '../operations/dashboard/start.js';
import { UsageError } from './usage.js';
import type { Command } from './command.js';

export const DASHBOARD_HELP = `usage: postage dashboard [--port N] [--host ADDRESS [--allow-host NAME]...]

Serves a live page of the system: the components that answer on 'presence'
with their handlers, bindings, version and concurrency, up or down as they
come and go; every queue's depth, consumers and rates; error queues with
their failures grouped, each message whole, replay and purge; the topology
drawn; and a conversation as a sequence diagram from the messages seen while
the page is open. Listens on 127.0.0.1 (--host to let others reach it) on
--port (default 8080, 0 for any free one) and prints the page's address with
a token in it: every request needs that token (opening the address sets it
as a cookie). It answers only requests for its own address, localhost, or a
name given with --allow-host NAME (repeatable; --host 0.0.0.0 needs one: the
name others reach it by). Runs until Ctrl-C.`;

export async function dashboard(
  values: Record<string, string | boolean | undefined>,
  allowHosts: readonly string[] = [],
): Promise<number> {
  const port = values.port === undefined ? 8080 : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new UsageError(`--port must be a port number (0 for any free one), not '${values.port}'`);
  const host = (values.host as string | undefined) ?? '127.0.0.1';
  if (['0.0.0.0', '::'].includes(host) && allowHosts.length === 0)
    throw new UsageError(
      `--host ${host} listens on every interface but answers only to localhost: ` +
        'name the host others reach it by with --allow-host NAME',
    );
  const d = await startDashboard({ port, host, allowHosts, waitForBrokerMs: 0 }).catch((err: unknown) => {
    if ((err as { code?: string }).code === 'EADDRINUSE')
      throw new UsageError(`port ${port} is taken: choose another with --port N (0 for any free one)`);
    throw err;
  });
  console.log(`dashboard: ${d.url}`);
  if (!['127.0.0.1', 'localhost', '::1'].includes(host))
    console.error(
      `postage: the dashboard listens on ${host}: anyone who can reach it can try; every request needs the token, ` +
        'which crosses the network in clear (HTTP): give the address only to whom you trust',
    );
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await d.close();
  return 0;
}

export const dashboardCommand: Command = {
  name: 'dashboard',
  synopsis: 'dashboard [--port N]',
  summary: 'a live page of the system, on http://127.0.0.1 (with a token)',
  help: DASHBOARD_HELP,
  options: { port: { type: 'string' }, host: { type: 'string' }, 'allow-host': { type: 'string', multiple: true } },
  run: ({ values, allowHosts }) => dashboard(values, allowHosts),
};

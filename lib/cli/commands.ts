/**
 * The `postage` commands, in the order the main help lists them. A new command is one file exporting a
 * {@link Command} and one line here: the help, `postage help NAME`, its options and the dispatch follow from it.
 */
import { asyncapi, ASYNCAPI_HELP } from './asyncapi.js';
import { type Command, seconds } from './command.js';
import { dashboardCommand } from './dashboard.js';
import { describeCommand } from './describe.js';
import { errorsCommand } from './errors-command.js';
import { graphCommand } from './graph.js';
import { pingCommand } from './ping.js';
import { rpcCommand } from './rpc.js';
import { runCommand } from './run.js';
import { sendCommand } from './send.js';
import { watchCommand } from './watch.js';

/** `postage asyncapi`, whose file (lib/cli/asyncapi.ts) keeps the function and its help. */
const asyncapiCommand: Command = {
  name: 'asyncapi',
  synopsis: 'asyncapi [MODULE] [--format yaml|json]',
  summary: "the AsyncAPI 3.0 document of a module's components, or of the fleet",
  help: ASYNCAPI_HELP,
  options: { format: { type: 'string' }, timeout: { type: 'string' } },
  run: ({ args, values }) => asyncapi(args, values, seconds),
};

export const COMMANDS: readonly Command[] = [
  pingCommand,
  describeCommand,
  runCommand,
  sendCommand,
  rpcCommand,
  watchCommand,
  errorsCommand,
  graphCommand,
  dashboardCommand,
  asyncapiCommand,
];

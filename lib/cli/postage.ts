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
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { BrokerError, ConfigError } from '../errors.js';
import { configureLogging } from '../log.js';
import { VERSION } from '../version.js';
import type { Command, OptionConfig, Values } from './command.js';
import { COMMANDS } from './commands.js';
import { takeReplayTarget } from './errors-command.js';
import { UsageError } from './usage.js';

const byName = new Map<string, Command>(COMMANDS.map((c) => [c.name, c]));
/** `ping, describe, … and dashboard`, for the lines that name them all. */
const NAMES = `${COMMANDS.slice(0, -1)
  .map((c) => c.name)
  .join(', ')} and ${COMMANDS[COMMANDS.length - 1].name}`;

const MAIN_HELP = `usage: postage <command> [options]

commands:
${COMMANDS.map((c) => `  ${c.synopsis.padEnd(37)} ${c.summary}`).join('\n')}

The broker comes from POSTAGE_URL or POSTAGE_HOST/PORT/USER/PASSWORD/VHOST.
Run 'postage help <command>' (or 'postage <command> --help') for a command's
options; 'postage --version' prints the version.
Exit codes: 0 done, 1 the remote side failed, 2 bad usage, 3 broker unreachable
or refused, 4 unroutable (no queue took the message). Failures are one line on
stderr; library logs go to stderr too (POSTAGE_LOG_LEVEL, default error; run:
info), as lines a person reads on a terminal and JSON lines elsewhere
(--log-format pretty|json).`;

/** The options every command takes, then each command's own (parseArgs refuses the rest by name). */
const CLI_OPTIONS: Record<string, OptionConfig> = {
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
  'log-format': { type: 'string' },
  ...Object.assign({}, ...COMMANDS.map((c) => c.options ?? {})),
};

/** `--log-format`, or the default for where stderr goes: lines a person reads on a terminal, JSON lines elsewhere. */
function logFormatOf(argv: readonly string[]): 'pretty' | 'json' {
  const i = argv.findIndex((a) => a === '--log-format' || a.startsWith('--log-format='));
  const given = i === -1 ? undefined : argv[i].includes('=') ? argv[i].split('=')[1] : argv[i + 1];
  if (given === undefined) return process.stderr.isTTY ? 'pretty' : 'json';
  if (given !== 'pretty' && given !== 'json')
    throw new UsageError(`--log-format must be pretty or json, not '${given}'`);
  return given;
}

export async function main(argv: string[]): Promise<number> {
  // The CLI speaks through its output and exit code; library logs only at the user's request, and never on stdout.
  // `run` hosts components: their logs keep their usual level (POSTAGE_LOG_LEVEL, info by default).
  if (argv[0] !== 'run') process.env.POSTAGE_LOG_LEVEL ??= 'error';
  const logFormat = logFormatOf(argv);
  configureLogging({ destination: pino.destination({ dest: 2, sync: true }), format: logFormat });
  const target = takeReplayTarget(argv);
  argv = target.argv;
  let parsed: ReturnType<
    typeof parseArgs<{ args: string[]; allowPositionals: true; strict: true; options: typeof CLI_OPTIONS }>
  >;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, strict: true, options: CLI_OPTIONS });
  } catch (err) {
    // One line that names the option and where to look, not Node's paragraph.
    const bad = /'([^']+)'/.exec((err as Error).message)?.[1];
    const where = argv.find((a) => !a.startsWith('-'));
    const what = bad ? `unknown option '${bad}'` : (err as Error).message.split('\n')[0];
    throw new UsageError(`${what}: see postage help${where && byName.has(where) ? ` ${where}` : ''}`);
  }
  // The one option that may repeat, kept apart so every other is a plain string or flag.
  const { 'allow-host': repeated, ...values } = parsed.values;
  const allowHosts = (repeated ?? []) as string[];
  if (values.version) {
    console.log(VERSION);
    return 0;
  }
  const [name, ...args] = parsed.positionals;
  // `postage help CMD` is `postage CMD --help`.
  if (name === 'help') {
    const topic = args[0];
    if (topic === undefined) {
      console.log(MAIN_HELP);
      return 0;
    }
    const about = byName.get(topic);
    if (!about) throw new UsageError(`no help for '${topic}': the commands are ${NAMES}`);
    console.log(about.help);
    return 0;
  }
  if (!name) {
    console.log(MAIN_HELP);
    return values.help ? 0 : 2;
  }
  const command = byName.get(name);
  if (!command)
    throw new UsageError(`unknown command '${name}': use ${NAMES.replace(' and ', ' or ')} (postage --help)`);
  if (values.help) {
    console.log(command.help);
    return 0;
  }
  return command.run({
    args,
    values: values as Values,
    allowHosts,
    replayTo: target.to,
    cli: fileURLToPath(import.meta.url),
    logFormat,
  });
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

/**
 * `postage run MODULE`: farine's `--start`. Loads a module, starts every
 * processor (and microthread) it exports under one scheduler with the
 * `POSTAGE_*` configuration, prints one line per component once ready, and
 * closes them gracefully on SIGTERM / SIGINT.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { constants } from 'node:os';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { BrokerError } from '../errors.js';
import { componentLogger, type Logger } from '../log.js';
import { RESTART_EXIT, restartRequested, SUPERVISED } from '../lifecycle/restart.js';
import { UsageError } from './usage.js';
import { isProcessor, isProcessorClass, type MessageProcessor } from '../receive/processor.js';
import { GenericApplicationExchange, PresenceExchange } from '../application/generic_application.js';
import { MicroScheduler } from '../microthreads/scheduler.js';
import { isMicroThread, type MicroThread } from '../microthreads/thread.js';
import type { Command } from './command.js';

/** Exit codes, as process managers read them (`restart`: between the launcher and the process it runs). */
export const RUN_EXIT = Object.freeze({ stopped: 0, crashed: 1, usage: 2, broker: 3, restart: RESTART_EXIT });

/**
 * `postage run` as a launcher: runs the module in a child process it owns, and
 * starts it again when the child exits asking for a restart (a `restart`
 * command): only after the old one has exited (its port free, its shutdown
 * done), and as its own child, never orphaned. SIGTERM and SIGINT go to the
 * child; the launcher exits with the child's code.
 */
export async function superviseModule(
  cli: string,
  path: string,
  logFormat?: 'pretty' | 'json',
  log: Logger = componentLogger('postage run'),
): Promise<number> {
  // The child's stderr is ours: it logs as the launcher was asked to, or as it would decide for that stream.
  const format = logFormat === undefined ? [] : ['--log-format', logFormat];
  for (;;) {
    const child = spawn(process.execPath, [...process.execArgv, cli, 'run', ...format, path], {
      stdio: 'inherit',
      env: { ...process.env, [SUPERVISED]: '1' },
    });
    const forward = (sig: NodeJS.Signals) => child.kill(sig);
    process.on('SIGTERM', forward);
    process.on('SIGINT', forward);
    const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
    process.off('SIGTERM', forward);
    process.off('SIGINT', forward);
    // A child ended by a signal (an OOM kill) exits the launcher as a shell reports it: 128 + the signal's number.
    if (code !== RUN_EXIT.restart) return code ?? 128 + (signal ? (constants.signals[signal] ?? 15) : 15);
    log.info({ module: path }, `${path} asked to restart: starting it again`);
  }
}

const TYPESCRIPT = /\.[cm]?ts$/;

/**
 * Imports a module by path (ESM or CommonJS); a TypeScript one through tsx,
 * registered before the import (importing it first would leave Node's cache
 * holding the failure for that URL). A module that cannot be loaded, or throws
 * while loading, is a usage error (exit 2), with its own error as the cause.
 */
export async function load(path: string): Promise<Record<string, unknown>> {
  const file = resolve(path);
  if (!existsSync(file)) throw new UsageError(`no module at ${file}`);
  const url = pathToFileURL(file).href;
  if (TYPESCRIPT.test(file) && !(await registerTypeScript())) {
    throw new UsageError(
      `${path} is TypeScript and tsx is not installed: npm install --save-dev tsx, or run the compiled .js`,
    );
  }
  try {
    return (await import(url)) as Record<string, unknown>;
  } catch (err) {
    const e = err as Error;
    throw new UsageError(`${path} cannot be loaded: ${e?.message ?? String(err)}`, { cause: err });
  }
}

/**
 * Lets TypeScript be imported: Node's own type stripping where it has it, else tsx (the user's dependency, not ours).
 */
async function registerTypeScript(): Promise<boolean> {
  if ((process.features as { typescript?: unknown }).typescript) return true;
  try {
    // Strings the compiler does not resolve: tsx is the user's choice, not a dependency.
    const esm = 'tsx/esm/api';
    ((await import(esm)) as { register: () => unknown }).register();
  } catch {
    return false;
  }
  try {
    // In a CommonJS project (no "type": "module") a .ts file is CommonJS: tsx's require hook loads it.
    const cjs = 'tsx/cjs/api';
    ((await import(cjs)) as { register: () => unknown }).register();
  } catch {
    // An older tsx without it: ESM projects still work.
  }
  return true;
}

/**
 * What a module exports that can run: thread instances, and processor classes built with no arguments. A class that
 * declares constructor parameters is refused with the fix (built without them it would run nameless: `ready:
 * undefined`);
 * a class exported beside an instance of it is left to the instance (both would consume, each message going to either).
 */
function runnables(mod: Record<string, unknown>, path: string): MicroThread[] {
  const found = new Set<MicroThread>();
  // A CommonJS module's exports arrive as its default export too: both are looked at.
  const cjs =
    typeof mod.default === 'object' && mod.default !== null && !isMicroThread(mod.default)
      ? (mod.default as Record<string, unknown>)
      : {};
  const exports = Object.entries({ ...cjs, ...mod });
  // By brand, not instanceof: a CommonJS component (a Nest build) brings its own copy of postage-ts.
  for (const [, v] of exports) if (isMicroThread(v)) found.add(v);
  const instances = [...found];
  for (const [name, v] of exports) {
    if (!isProcessorClass(v)) continue;
    const Class = v as new () => MessageProcessor;
    if (instances.some((t) => t instanceof Class)) continue;
    if (Class.length > 0)
      throw new UsageError(
        `${path}: export '${name}' is a processor class whose constructor takes arguments, which postage run cannot ` +
          `know: export an instance instead (export const ${lowerFirst(name)} = new ${Class.name || name}(…)), ` +
          'or give the class a constructor that needs none',
      );
    try {
      found.add(new Class());
    } catch (err) {
      throw new UsageError(
        `${path}: export '${name}' is a processor class that cannot be built without arguments ` +
          `(${(err as Error).message}): export an instance instead`,
      );
    }
  }
  if (found.size === 0)
    throw new UsageError(
      `${path} exports nothing to run: export a MessageProcessor (or any MicroThread) instance, ` +
        'or a processor class whose constructor needs no arguments',
    );
  return [...found];
}

const lowerFirst = (s: string) => s.charAt(0).toLowerCase() + s.slice(1);

/** One line for a ready component: its name, type, and where it takes messages from. */
function readyLine(t: MicroThread): string {
  if (!isProcessor(t)) return `ready: ${t.name} (microthread)`;
  // Its work bindings: not its presence queue's, nor the keys a GenericApplication is bound with for ping (presence,
  // and the N@H, @H, P@H addresses), which made the line several times longer and said nothing of this one.
  const where = t.consumer
    .bindings()
    .filter(
      (b) =>
        b.queue !== t.presenceQueue &&
        b.exchange !== PresenceExchange.name &&
        !(b.exchange === GenericApplicationExchange.name && b.key.includes('@')),
    )
    .map((b) => `${b.exchange || '(default)'}/${b.key} -> ${b.queue}`);
  const on = where.length > 0 ? `on ${where.join(', ')}` : 'with no bindings';
  return `ready: ${t.fingerprint.name} (${t.fingerprint.type}) ${on}`;
}

/**
 * Runs a module's components until they stop: resolves to an exit code, 0
 * once they closed (a signal, a quit command), 1 when one crashed, 3 when the
 * broker could not be reached or refused. Bad usage throws `UsageError`.
 */
export async function runModule(
  path: string,
  out: (line: string) => void = console.log,
  log: Logger = componentLogger('postage run'),
): Promise<number> {
  const threads = runnables(await load(path), path);
  let crashed: unknown;
  const scheduler = new MicroScheduler({
    name: 'postage run',
    autoquit: true,
    onThreadError: (thread, e) => {
      crashed ??= e;
      log.error({ err: e }, `${thread.name} failed: ${(e as Error)?.message ?? String(e)}`);
      void scheduler.stop();
    },
  });
  const processors = threads.filter(isProcessor);
  try {
    await Promise.all(processors.map((p) => p.ready()));
  } catch (e) {
    await Promise.allSettled(processors.map((p) => p.close()));
    if (e instanceof BrokerError || (e as { name?: unknown })?.name === 'BrokerError') {
      log.error((e as Error).message);
      return RUN_EXIT.broker;
    }
    throw e;
  }
  for (const t of threads) out(readyLine(t));
  let signalled: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    // A second signal: stop waiting for handlers, as a process manager's kill would.
    if (signalled) process.exit(128 + (sig === 'SIGINT' ? 2 : 15));
    signalled = sig;
    const n = threads.length;
    log.info({ signal: sig, components: n }, `${sig}: closing ${n} component${n === 1 ? '' : 's'} gracefully`);
    void Promise.allSettled(threads.map((t) => t.close())).then(() => scheduler.stop());
  };
  // Kept until the process exits: while one is installed, a processor's own signal handling closes it
  // and leaves the exit to us instead of raising the signal again.
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // Run by a launcher that was killed outright (kill -9): nobody would stop this process; it stops itself, gracefully.
  const launcher = process.ppid;
  const orphaned: NodeJS.Timeout | undefined =
    process.env[SUPERVISED] === '1'
      ? setInterval(() => {
          if (process.ppid === launcher) return;
          clearInterval(orphaned);
          onSignal('SIGTERM');
        }, 1000)
      : undefined;
  orphaned?.unref();
  try {
    for (const t of threads) scheduler.addMicrothread(t);
    await scheduler.run();
  } finally {
    clearInterval(orphaned);
    await Promise.allSettled(threads.map((t) => t.close()));
  }
  if (crashed !== undefined) return RUN_EXIT.crashed;
  return restartRequested() ? RUN_EXIT.restart : RUN_EXIT.stopped;
}

export const RUN_HELP = `usage: postage run MODULE [--log-format pretty|json]

Loads MODULE (.js, or .ts where tsx is installed) and starts every
MessageProcessor (and MicroThread) it exports, and every processor class
whose constructor needs no arguments, under one scheduler with the POSTAGE_*
configuration. Prints one line per component once all are ready, then runs
until they stop: SIGTERM or SIGINT closes them gracefully (handlers in flight
finish and are acked; a second signal ends at once), as does a quit command.
Exits 0 once they closed, 1 when one crashed, 2 when the module cannot be
loaded or exports nothing to run, 3 when the broker cannot be reached.
A class that takes constructor arguments is refused (export an instance);
a class exported beside an instance of it is left to the instance.

Logs go to stderr, one line per event: readable lines on a terminal, JSON
lines elsewhere (a pipe, a file, a log collector); --log-format pretty|json
chooses. POSTAGE_LOG_LEVEL sets how much: error and warn, what went wrong;
info (the default) adds signals, restarts and what each component says it
does; debug adds every message.`;

export const runCommand: Command = {
  name: 'run',
  synopsis: 'run MODULE',
  summary: 'start the processors a module exports',
  help: RUN_HELP,
  async run({ args, cli, logFormat }) {
    if (args.length !== 1) throw new UsageError('run needs MODULE');
    // The launcher runs the module in a child it owns (restarts happen there); the child runs it.
    if (process.env[SUPERVISED] === '1') return runModule(args[0]);
    return superviseModule(cli, args[0], logFormat);
  },
};

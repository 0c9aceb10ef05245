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
import { RESTART_EXIT, restartRequested, SUPERVISED } from '../lifecycle/restart.js';
import { UsageError } from './usage.js';
import { isProcessor, isProcessorClass, type MessageProcessor } from '../messaging/processor.js';
import { MicroScheduler } from '../microthreads/scheduler.js';
import { isMicroThread, type MicroThread } from '../microthreads/thread.js';

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
  err: (line: string) => void = console.error,
): Promise<number> {
  for (;;) {
    const child = spawn(process.execPath, [...process.execArgv, cli, 'run', path], {
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
    err(`postage run: ${path} asked to restart: starting it again`);
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

/** What a module exports that can run: thread instances, and processor classes built with no arguments. */
function runnables(mod: Record<string, unknown>, path: string): MicroThread[] {
  const found = new Set<MicroThread>();
  // A CommonJS module's exports arrive as its default export too: both are looked at.
  const cjs =
    typeof mod.default === 'object' && mod.default !== null && !isMicroThread(mod.default)
      ? (mod.default as Record<string, unknown>)
      : {};
  const exports = { ...cjs, ...mod };
  for (const [name, v] of Object.entries(exports)) {
    // By brand, not instanceof: a CommonJS component (a Nest build) brings its own copy of postage-ts.
    if (isMicroThread(v)) found.add(v);
    else if (isProcessorClass(v)) {
      try {
        found.add(new (v as new () => MessageProcessor)());
      } catch (err) {
        throw new UsageError(
          `${path}: export '${name}' is a processor class that cannot be built without arguments (${(err as Error).message}): export an instance instead`,
        );
      }
    }
  }
  if (found.size === 0)
    throw new UsageError(
      `${path} exports nothing to run: export a MessageProcessor (or any MicroThread) instance, or a processor class whose constructor needs no arguments`,
    );
  return [...found];
}

/** One line for a ready component: its name, type, and where it takes messages from. */
function readyLine(t: MicroThread): string {
  if (!isProcessor(t)) return `ready: ${t.name} (microthread)`;
  const where = t.consumer
    .bindings()
    .filter((b) => b.queue !== t.presenceQueue)
    .map((b) => `${b.exchange || '(default)'}/${b.key} -> ${b.queue}`);
  return `ready: ${t.fingerprint.name} (${t.fingerprint.type}) ${where.length > 0 ? `on ${where.join(', ')}` : 'with no bindings'}`;
}

/**
 * Runs a module's components until they stop: resolves to an exit code, 0
 * once they closed (a signal, a quit command), 1 when one crashed, 3 when the
 * broker could not be reached or refused. Bad usage throws `UsageError`.
 */
export async function runModule(
  path: string,
  out: (line: string) => void = console.log,
  err: (line: string) => void = console.error,
): Promise<number> {
  const threads = runnables(await load(path), path);
  let crashed: unknown;
  const scheduler = new MicroScheduler({
    name: 'postage run',
    autoquit: true,
    onThreadError: (thread, e) => {
      crashed ??= e;
      err(`postage run: ${thread.name} failed: ${(e as Error)?.message ?? String(e)}`);
      void scheduler.stop();
    },
  });
  const processors = threads.filter(isProcessor);
  try {
    await Promise.all(processors.map((p) => p.ready()));
  } catch (e) {
    await Promise.allSettled(processors.map((p) => p.close()));
    if (e instanceof BrokerError || (e as { name?: unknown })?.name === 'BrokerError') {
      err(`postage run: ${(e as Error).message}`);
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
    err(`postage run: ${sig}: closing ${threads.length} component${threads.length === 1 ? '' : 's'} gracefully`);
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

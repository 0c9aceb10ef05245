/**
 * `postage run MODULE`: farine's `--start`. Loads a module, starts every
 * processor (and microthread) it exports under one scheduler with the
 * `POSTAGE_*` configuration, prints one line per component once ready, and
 * closes them gracefully on SIGTERM / SIGINT.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { BrokerError } from '../errors.js';
import { UsageError } from './usage.js';
import { MessageProcessor } from '../messaging/processor.js';
import { MicroScheduler } from '../microthreads/scheduler.js';
import { MicroThread } from '../microthreads/thread.js';

/** Exit codes, as process managers read them. */
export const RUN_EXIT = Object.freeze({ stopped: 0, crashed: 1, usage: 2, broker: 3 });

/** Imports a module by path; a TypeScript one through tsx when Node cannot load it alone. */
async function load(path: string): Promise<Record<string, unknown>> {
  const file = resolve(path);
  if (!existsSync(file)) throw new UsageError(`no module at ${file}`);
  const url = pathToFileURL(file).href;
  try {
    return (await import(url)) as Record<string, unknown>;
  } catch (err) {
    if ((err as { code?: string }).code !== 'ERR_UNKNOWN_FILE_EXTENSION') throw err;
    let register: (() => unknown) | undefined;
    try {
      // A string the compiler does not resolve: tsx is the user's choice, not a dependency.
      const tsx = 'tsx/esm/api';
      ({ register } = (await import(tsx)) as { register: () => unknown });
    } catch {
      throw new UsageError(`${path} is TypeScript and tsx is not installed: npm install --save-dev tsx, or run the compiled .js`);
    }
    register();
    return (await import(url)) as Record<string, unknown>;
  }
}

/** What a module exports that can run: thread instances, and processor classes built with no arguments. */
function runnables(mod: Record<string, unknown>, path: string): MicroThread[] {
  const found = new Set<MicroThread>();
  for (const [name, v] of Object.entries(mod)) {
    if (v instanceof MicroThread) found.add(v);
    else if (typeof v === 'function' && v.prototype instanceof MessageProcessor) {
      try {
        found.add(new (v as new () => MessageProcessor)());
      } catch (err) {
        throw new UsageError(`${path}: export '${name}' is a processor class that cannot be built without arguments (${(err as Error).message}): export an instance instead`);
      }
    }
  }
  if (found.size === 0) throw new UsageError(`${path} exports nothing to run: export a MessageProcessor (or any MicroThread) instance, or a processor class whose constructor needs no arguments`);
  return [...found];
}

/** One line for a ready component: its name, type, and where it takes messages from. */
function readyLine(t: MicroThread): string {
  if (!(t instanceof MessageProcessor)) return `ready: ${t.name} (microthread)`;
  const where = t.consumer.bindings().map((b) => `${b.exchange || '(default)'}/${b.key} -> ${b.queue}`);
  return `ready: ${t.fingerprint.name} (${t.fingerprint.type}) ${where.length > 0 ? `on ${where.join(', ')}` : 'with no bindings'}`;
}

/**
 * Runs a module's components until they stop: resolves to an exit code, 0
 * once they closed (a signal, a quit command), 1 when one crashed, 3 when the
 * broker could not be reached or refused. Bad usage throws `UsageError`.
 */
export async function runModule(path: string, out: (line: string) => void = console.log, err: (line: string) => void = console.error): Promise<number> {
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
  const processors = threads.filter((t): t is MessageProcessor => t instanceof MessageProcessor);
  try {
    await Promise.all(processors.map((p) => p.ready()));
  } catch (e) {
    await Promise.allSettled(processors.map((p) => p.close()));
    if (e instanceof BrokerError) {
      err(`postage run: ${e.message}`);
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
  try {
    for (const t of threads) scheduler.addMicrothread(t);
    await scheduler.run();
  } finally {
    await Promise.allSettled(threads.map((t) => t.close()));
  }
  return crashed === undefined ? RUN_EXIT.stopped : RUN_EXIT.crashed;
}

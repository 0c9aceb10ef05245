/** The `postage` CLI as the specs run it: from source, against the specs' broker (this run's own vhost). */
import { expect } from 'chai';
import { execFile, spawn, type ChildProcessByStdio } from 'node:child_process';
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import { brokerUrl } from './broker.js';
import { within } from './wait.js';

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** The broker to use. @default the specs' broker */
  url?: string;
  /** Added to the environment (after POSTAGE_URL and an empty POSTAGE_LOG_LEVEL, so a spec can set either). */
  env?: Record<string, string>;
  /** What the command reads on stdin (ended at once, so a prompt gets an end of file if none is given). */
  input?: string;
  /** Killed after this many ms. @default 30000 */
  timeout?: number;
}

const CLI = ['--import', 'tsx', 'lib/cli/postage.ts'];

async function environment(o: CliOptions): Promise<NodeJS.ProcessEnv> {
  // An empty level is the CLI's own default: the specs' root hooks set 'silent' for the test process only.
  return { ...process.env, POSTAGE_URL: o.url ?? (await brokerUrl()), POSTAGE_LOG_LEVEL: '', ...o.env };
}

/** Runs `postage ARGS` to its end and resolves to its exit code and output. */
export async function postage(args: string[], options: CliOptions = {}): Promise<Run> {
  const env = await environment(options);
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [...CLI, ...args],
      { timeout: options.timeout ?? 30_000, env },
      (err, stdout, stderr) =>
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
    child.stdin?.end(options.input ?? '');
  });
}

/** The rows `postage ping` printed under its header, as [NAME, TYPE, PID@HOST]; fails unless it exited 0. */
export function pinged(r: Run): string[][] {
  expect(r.code, r.stderr).to.equal(0);
  const [header, ...rows] = r.stdout.trim().split('\n');
  expect(header.split(/\s+/).slice(0, 3)).to.deep.equal(['NAME', 'TYPE', 'PID@HOST']);
  return rows.map((row) => row.split(/\s+/).slice(0, 3));
}

export interface Launched {
  child: ChildProcessByStdio<null, Readable, Readable>;
  /** stdout, line by line, as it came. */
  lines: string[];
  /** stderr, line by line. */
  errors: string[];
  /** The exit code and signal. */
  exited: Promise<[number | null, NodeJS.Signals | null]>;
  /**
   * Resolves to the first line (stdout or stderr) matching `re`; rejects when the process exits first or after
   * `timeout` ms, with what it printed.
   */
  line(re: RegExp, timeout?: number): Promise<string>;
  /** SIGKILLs the process if it is still running. */
  kill(): void;
}

/** Starts `postage ARGS` (a long-running command: run, watch) with its output read line by line. */
export async function launch(args: string[], options: Omit<CliOptions, 'input' | 'timeout'> = {}): Promise<Launched> {
  const child = spawn(process.execPath, [...CLI, ...args], {
    env: await environment(options),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const errors: string[] = [];
  const waiting: Array<{ re: RegExp; resolve: (l: string) => void }> = [];
  const feed = (into: string[]) => {
    let partial = '';
    return (chunk: Buffer) => {
      const parts = (partial + String(chunk)).split('\n');
      partial = parts.pop() ?? '';
      for (const l of parts.filter(Boolean)) {
        into.push(l);
        for (const w of waiting.filter((x) => x.re.test(l))) {
          waiting.splice(waiting.indexOf(w), 1);
          w.resolve(l);
        }
      }
    };
  };
  child.stdout.on('data', feed(lines));
  child.stderr.on('data', feed(errors));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  const printed = () => [...lines, ...errors].join('\n');
  return {
    child,
    lines,
    errors,
    exited,
    line(re, timeout = 30_000) {
      const seen = [...lines, ...errors].find((l) => re.test(l));
      if (seen !== undefined) return Promise.resolve(seen);
      const w = { re, resolve: (_: string) => undefined as void };
      const found = new Promise<string>((resolve, reject) => {
        w.resolve = resolve;
        waiting.push(w);
        void exited.then(([code, signal]) =>
          reject(
            new Error(`postage ${args.join(' ')} exited (${code ?? signal}) before printing ${re}:\n${printed()}`),
          ),
        );
      });
      return within(found, {
        timeout,
        message: () => `postage ${args.join(' ')} printing ${re}; it printed:\n${printed()}`,
      }).finally(() => {
        const i = waiting.indexOf(w);
        if (i >= 0) waiting.splice(i, 1);
      });
    },
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

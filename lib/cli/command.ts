/**
 * What every `postage` command is to the dispatcher (cli/postage.ts): a name, a line for the main help, its own help,
 * the options it takes, and a function from what was parsed to an exit code. A new command is a file that exports one
 * and a line in cli/commands.ts.
 */
import type { ParseArgsConfig } from 'node:util';
import { UsageError } from './usage.js';

/** One option as parseArgs takes it. */
export type OptionConfig = NonNullable<ParseArgsConfig['options']>[string];

/** Parsed options, by name: a string, a flag, or absent. */
export type Values = Record<string, string | boolean | undefined>;

/** What a command is run with. */
export interface CommandInput {
  /** The words after the command's name. */
  readonly args: string[];
  readonly values: Values;
  /** `--allow-host`, the one option that may repeat. */
  readonly allowHosts: readonly string[];
  /** `errors replay --to EXCHANGE [KEY]`, taken out of argv before it was parsed. */
  readonly replayTo?: { exchange: string; routingKey?: string };
  /** The file of the `postage` command itself (`run` starts it again as its child). */
  readonly cli: string;
  /** How library logs are written: lines a person reads, or JSON. */
  readonly logFormat: 'pretty' | 'json';
}

export interface Command {
  readonly name: string;
  /** Its usage in the main help's list, e.g. `ping [ADDRESS]`. */
  readonly synopsis: string;
  /** What it does, in the main help's list. */
  readonly summary: string;
  /** `postage help NAME`. */
  readonly help: string;
  /** The options it takes besides --help (parseArgs refuses any no command takes). */
  readonly options?: Readonly<Record<string, OptionConfig>>;
  run(input: CommandInput): Promise<number>;
}

/** A `--timeout`-like option in seconds: a positive number, or the fallback when absent. */
export function seconds(v: string | boolean | undefined, fallback: number, flag: string): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--${flag} must be a positive number of seconds, not '${v}'`);
  return n;
}

/** Columns padded to their widest cell, under a header. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  return [header, ...rows]
    .map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  '))
    .join('\n');
}

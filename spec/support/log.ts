/** A logger whose lines a spec reads and waits for. */
import type { Logger } from 'pino';
import { makeLogger } from '../../lib/log.js';
import { within } from './wait.js';

export interface Captured {
  logger: Logger;
  /** Every line written, as written (JSON). */
  lines: string[];
  /** Every line, parsed. */
  records(): Array<Record<string, unknown>>;
  /** Resolves to the first line matching `re`, now or when it is written; rejects after `timeout` ms. */
  when(re: RegExp, timeout?: number): Promise<string>;
}

/** A pino logger at `level` that keeps its lines for the spec instead of printing them. */
export function capture(level = 'warn'): Captured {
  const lines: string[] = [];
  const waiting: Array<{ re: RegExp; resolve: (l: string) => void }> = [];
  const logger = makeLogger(level, {
    write: (l: string) => {
      lines.push(l);
      for (const w of waiting.filter((x) => x.re.test(l))) {
        waiting.splice(waiting.indexOf(w), 1);
        w.resolve(l);
      }
    },
  });
  return {
    logger,
    lines,
    records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>),
    when: (re, timeout = 5000) => {
      const seen = lines.find((l) => re.test(l));
      if (seen !== undefined) return Promise.resolve(seen);
      const w = { re, resolve: (_: string) => undefined as void };
      const p = new Promise<string>((resolve) => {
        w.resolve = resolve;
        waiting.push(w);
      });
      return within(p, { timeout, message: `a log line matching ${re}` }).finally(() => {
        const i = waiting.indexOf(w);
        if (i >= 0) waiting.splice(i, 1);
      });
    },
  };
}

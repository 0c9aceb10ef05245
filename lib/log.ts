import { pino, type DestinationStream, type Logger } from 'pino';
import { isatty } from 'node:tty';
import { config } from './config.js';

export type { Logger, DestinationStream };

let root: Logger | undefined;

/** A logger of the `(fields, message)` kind: bunyan's, or an application's own with debug/info/warn/error. */
export interface FieldsLogger {
  debug(fields: object, message?: string): unknown;
  info(fields: object, message?: string): unknown;
  warn(fields: object, message?: string): unknown;
  error(fields: object, message?: string): unknown;
}

/** NestJS's `LoggerService` (`new Logger('orders')`, or the app's): messages first, then a context. */
export interface NestLoggerService {
  log(message: unknown, ...optionalParams: unknown[]): unknown;
  error(message: unknown, ...optionalParams: unknown[]): unknown;
  warn(message: unknown, ...optionalParams: unknown[]): unknown;
  debug?(message: unknown, ...optionalParams: unknown[]): unknown;
  verbose?(message: unknown, ...optionalParams: unknown[]): unknown;
}

/**
 * Any logger postage-ts can log through: pino (as it is), a `(fields, message)` one, Nest's `LoggerService`, or
 * `console`.
 */
export type AnyLogger = Logger | FieldsLogger | NestLoggerService | Console;

/**
 * What {@link configureLogging} takes: a logger of the application's own, or a level and a destination for the
 * library's.
 */
export interface LoggingOptions {
  /**
   * The host application's logger (pino, a `(fields, message)` logger, Nest's `LoggerService`, `console`): components
   * log through it.
   */
  logger?: AnyLogger;
  /** The library's own logger's level. @default POSTAGE_LOG_LEVEL, 'info' */
  level?: string;
  /** Where the library's own logger writes. @default standard output */
  destination?: DestinationStream;
  /**
   * How the library's own logger writes each line: pino's JSON (for a log collector), or `pretty`, one line a person
   * reads (`14:02:07.311 WARN  orders (processor): …`). @default 'json'
   */
  format?: 'json' | 'pretty';
}

/**
 * Where postage-ts logs, for the whole process: hand in the application's
 * pino logger, or a level and a destination. Components created afterwards
 * use it (a component's own `logger` option wins).
 *
 * @example
 * configureLogging({ logger: app.logger.child({ module: 'postage' }) });
 * configureLogging({ level: 'debug', destination: pino.destination(2) });   // debug, to stderr
 */
export function configureLogging(options: LoggingOptions): void {
  root = options.logger
    ? asPino(options.logger, undefined, options.level)
    : makeLogger(
        options.level ?? levelFromConfig(),
        options.format === 'pretty' ? prettyDestination(options.destination) : options.destination,
      );
}

const PRETTY_LEVELS: Record<number, string> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO ',
  40: 'WARN ',
  50: 'ERROR',
  60: 'FATAL',
};
const COLOURS: Record<number, string> = { 10: '90', 20: '90', 30: '32', 40: '33', 50: '31', 60: '31' };
/** Fields every line has, or that the line's head already shows. */
const SHOWN = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'component', 'componentName']);

/** A field's value as `key=value` shows it: a string bare unless it has spaces, an error by its message. */
function shown(v: unknown): string {
  if (typeof v === 'string') return /[\s="]/.test(v) || v === '' ? JSON.stringify(v) : v;
  if (v !== null && typeof v === 'object' && typeof (v as { message?: unknown }).message === 'string')
    return JSON.stringify((v as { message: string }).message);
  return JSON.stringify(v);
}

/**
 * One of pino's JSON lines as one line a person reads: the local time (24-hour, with milliseconds), the level, who
 * said it, the message, then the other fields as `key=value`. A line that is not pino's JSON is kept as it is.
 * @internal
 */
export function prettyLine(line: string, colour = false): string {
  let o: Record<string, unknown> & { level?: number; time?: number; msg?: string };
  try {
    o = JSON.parse(line) as typeof o;
  } catch {
    return line.endsWith('\n') ? line : `${line}\n`;
  }
  const t = new Date(typeof o.time === 'number' ? o.time : Date.now());
  const two = (n: number) => String(n).padStart(2, '0');
  const ms = String(t.getMilliseconds()).padStart(3, '0');
  const time = `${two(t.getHours())}:${two(t.getMinutes())}:${two(t.getSeconds())}.${ms}`;
  const n = o.level ?? 30;
  const level = PRETTY_LEVELS[n] ?? String(n);
  const who =
    o.componentName !== undefined
      ? `${String(o.componentName)} (${String(o.component ?? '?')}): `
      : o.component !== undefined
        ? `${String(o.component)}: `
        : '';
  const fields = Object.entries(o)
    .filter(([k]) => !SHOWN.has(k))
    .map(([k, v]) => `${k}=${shown(v)}`)
    .join(' ');
  const head = colour ? `\u001b[${COLOURS[n] ?? '0'}m${level}\u001b[0m` : level;
  return `${time} ${head} ${who}${o.msg ?? ''}${fields ? `  ${fields}` : ''}\n`;
}

/**
 * A destination that writes {@link prettyLine}s to `to` (standard output by default), in colour where it is a terminal
 * and `NO_COLOR` is not set.
 */
function prettyDestination(to?: DestinationStream): DestinationStream {
  const target = to ?? pino.destination({ dest: 1, sync: true });
  const fd = (target as { fd?: unknown }).fd;
  const colour = !process.env.NO_COLOR && typeof fd === 'number' && isatty(fd);
  return { write: (line: string) => target.write(prettyLine(line, colour)) };
}

const LEVEL_NAMES: Record<number, 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal'> = {
  10: 'trace',
  20: 'debug',
  30: 'info',
  40: 'warn',
  50: 'error',
  60: 'fatal',
};

function isPino(l: AnyLogger): l is Logger {
  const p = l as Partial<Logger>;
  return typeof p.child === 'function' && typeof p.isLevelEnabled === 'function' && typeof p.levels === 'object';
}

/**
 * Any logger as the pino logger postage-ts logs through: pino as it is;
 * another kind behind a pino whose lines are handed to it, level by level
 * (`level`: the lowest passed on, POSTAGE_LOG_LEVEL by default). Nest's
 * `LoggerService` gets the message with its fields after it and the
 * component as context; `console` the message and the fields.
 */
export function asPino(l: AnyLogger, bindings?: Record<string, string>, level?: string): Logger {
  if (isPino(l)) return l;
  const nest = typeof (l as NestLoggerService).log === 'function' && typeof (l as FieldsLogger).info !== 'function';
  const isConsole = typeof (l as Console).table === 'function';
  const write = (line: string) => {
    const {
      level: n,
      msg,
      time: _time,
      pid: _pid,
      hostname: _host,
      ...fields
    } = JSON.parse(line) as Record<string, unknown> & { level: number; msg?: string };
    const name = LEVEL_NAMES[n] ?? 'info';
    const message = msg ?? '';
    if (nest) {
      const target = l as NestLoggerService;
      const { component, componentName, ...rest } = fields;
      const who = String(componentName ?? component ?? 'postage-ts');
      const extra = Object.keys(rest).length > 0 ? ` ${JSON.stringify(rest)}` : '';
      // A Nest Logger made with a context (`new Logger('postage')`) appends it after what it is given, and its
      // ConsoleLogger then prints every argument but the last as a line of its own: the component goes into the
      // message there, and is the context only for a logger that has none.
      const owned = typeof (target as { context?: unknown }).context === 'string';
      const args: unknown[] = owned ? [`${who}: ${message}${extra}`] : [`${message}${extra}`, who];
      if (name === 'error' || name === 'fatal') target.error(...(args as [unknown]));
      else if (name === 'warn') target.warn(...(args as [unknown]));
      else if (name === 'info') target.log(...(args as [unknown]));
      else (target.debug ?? target.verbose ?? target.log).apply(target, args as [unknown]);
    } else if (isConsole) {
      const c = l as Console;
      const method = name === 'fatal' ? 'error' : name === 'trace' ? 'debug' : name;
      c[method](message, fields);
    } else {
      const f = l as FieldsLogger;
      const method = name === 'fatal' ? 'error' : name === 'trace' ? 'debug' : name;
      f[method](fields, message);
    }
  };
  const logger = makeLogger(level ?? levelFromConfig(), { write } as DestinationStream);
  // Which component said it: Nest's context, a field for the others.
  return bindings ? logger.child(bindings) : logger;
}

function levelFromConfig(): string {
  const cfg = config();
  return cfg.debugMode ? 'debug' : cfg.logLevel;
}

/**
 * The library's root logger. Quiet by default (`info`, and the library logs
 * little at info); `POSTAGE_LOG_LEVEL=debug` shows the wire.
 */
export function rootLogger(): Logger {
  root ??= makeLogger(levelFromConfig());
  return root;
}

/** A pino logger with the library's settings. @internal */
export function makeLogger(level: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    // Belt and braces: nothing called password ever reaches a log line.
    redact: { paths: ['password', '*.password', '*.*.password', 'url', '*.url'], censor: '***' },
  };
  return destination ? pino(options, destination) : pino(options);
}

/** Replaces the root logger (tests capture output with this). @internal */
export function setRootLogger(logger: Logger): void {
  root = logger;
}

/**
 * One child logger per component: `component` is its kind, `componentName`
 * its fingerprint name (log lines about a message carry `messageType` and
 * `messageName`, so no key means two things).
 */
export function componentLogger(component: string, name?: string): Logger {
  return rootLogger().child(name === undefined ? { component } : { component, componentName: name });
}

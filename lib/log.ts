import { pino, type DestinationStream, type Logger } from 'pino';
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
    : makeLogger(options.level ?? levelFromConfig(), options.destination);
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
      const context = String(fields.componentName ?? fields.component ?? 'postage-ts');
      const text = Object.keys(fields).length > 0 ? `${message} ${JSON.stringify(fields)}` : message;
      if (name === 'error' || name === 'fatal') target.error(text, undefined, context);
      else if (name === 'warn') target.warn(text, context);
      else if (name === 'info') target.log(text, context);
      else (target.debug ?? target.verbose ?? target.log).call(target, text, context);
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

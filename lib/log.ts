import { pino, type DestinationStream, type Logger } from 'pino';
import { config } from './config.js';

export type { Logger, DestinationStream };

let root: Logger | undefined;

/** What {@link configureLogging} takes: a logger of the application's own, or a level and a destination for the library's. */
export interface LoggingOptions {
  /** A pino logger of the host application: components log through children of it. */
  logger?: Logger;
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
  root = options.logger ?? makeLogger(options.level ?? levelFromConfig(), options.destination);
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

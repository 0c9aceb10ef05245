import { pino, type DestinationStream, type Logger } from 'pino';
import { config } from './config.js';

export type { Logger };

let root: Logger | undefined;

/**
 * The library's root logger. Quiet by default (`info`, and the library logs
 * little at info); `POSTAGE_LOG_LEVEL=debug` shows the wire.
 */
export function rootLogger(): Logger {
  if (!root) {
    const cfg = config();
    root = makeLogger(cfg.debugMode ? 'debug' : cfg.logLevel);
  }
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

/** One child logger per component, carrying its fingerprint name. */
export function componentLogger(component: string, name?: string): Logger {
  return rootLogger().child(name === undefined ? { component } : { component, name });
}

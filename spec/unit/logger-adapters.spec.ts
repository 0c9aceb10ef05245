/** Any logger: postage-ts logs through pino, a (fields, message) logger, Nest's LoggerService or console. */
import { expect } from 'chai';
import { pino } from 'pino';
import { asPino } from '../../lib/log.js';

describe('A logger handed to postage-ts', () => {
  it('is used as it is when it is pino', () => {
    const p = pino({ level: 'silent' });
    expect(asPino(p)).to.equal(p);
  });

  it("gets (fields, message) by level when it is a fields logger (bunyan's shape)", () => {
    const calls: Array<[string, object, string | undefined]> = [];
    const fields = {
      debug: (f: object, m?: string) => calls.push(['debug', f, m]),
      info: (f: object, m?: string) => calls.push(['info', f, m]),
      warn: (f: object, m?: string) => calls.push(['warn', f, m]),
      error: (f: object, m?: string) => calls.push(['error', f, m]),
    };
    const log = asPino(fields, { component: 'processor', componentName: 'orders' }, 'debug');
    log.warn({ messageName: 'gret' }, 'no handler takes command/gret');
    log.debug('quiet detail');
    expect(calls).to.deep.equal([
      [
        'warn',
        { component: 'processor', componentName: 'orders', messageName: 'gret' },
        'no handler takes command/gret',
      ],
      ['debug', { component: 'processor', componentName: 'orders' }, 'quiet detail'],
    ]);
  });

  it("gets the message, its fields after it, and the component as context when it is Nest's LoggerService", () => {
    const calls: unknown[][] = [];
    const nest = {
      log: (...a: unknown[]) => calls.push(['log', ...a]),
      error: (...a: unknown[]) => calls.push(['error', ...a]),
      warn: (...a: unknown[]) => calls.push(['warn', ...a]),
      debug: (...a: unknown[]) => calls.push(['debug', ...a]),
    };
    const log = asPino(nest, { component: 'processor', componentName: 'orders' }, 'info');
    log.info('ready');
    log.error({ err: 'boom' }, 'handler failed');
    log.debug('not at info');
    expect(calls).to.deep.equal([
      ['log', 'ready {"component":"processor","componentName":"orders"}', 'orders'],
      ['error', 'handler failed {"component":"processor","componentName":"orders","err":"boom"}', undefined, 'orders'],
    ]);
  });

  it('gets the message and the fields when it is console', () => {
    const calls: unknown[][] = [];
    const fake = {
      debug: () => undefined,
      info: () => undefined,
      error: () => undefined,
      log: () => undefined,
      table: () => undefined,
      warn: (...a: unknown[]) => calls.push(a),
    } as unknown as Console;
    asPino(fake, undefined, 'info').warn({ attempt: 2 }, 'reconnecting');
    expect(calls).to.deep.equal([['reconnecting', { attempt: 2 }]]);
  });
});

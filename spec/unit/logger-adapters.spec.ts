/** Any logger: postage-ts logs through pino, a (fields, message) logger, Nest's LoggerService or console. */
import { ConsoleLogger, Logger as NestLogger } from '@nestjs/common';
import { expect } from 'chai';
import { pino } from 'pino';
import sinon from 'sinon';
import { asPino, prettyLine } from '../../lib/log.js';

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
      ['log', 'ready', 'orders'],
      ['error', 'handler failed {"err":"boom"}', 'orders'],
    ]);
  });

  it("puts the component in the message, once, when Nest's Logger has a context of its own", () => {
    const calls: unknown[][] = [];
    // Nest's Logger appends its own context after what it is given; its ConsoleLogger prints every argument but the
    // last as a line of its own, so a second argument would be a second line.
    const nest = {
      context: 'postage',
      log: (...a: unknown[]) => calls.push(['log', ...a]),
      error: (...a: unknown[]) => calls.push(['error', ...a]),
      warn: (...a: unknown[]) => calls.push(['warn', ...a]),
    };
    const log = asPino(nest, { component: 'processor', componentName: 'orders' }, 'info');
    log.warn({ attempt: 2 }, 'reconnecting');
    expect(calls).to.deep.equal([['warn', 'orders: reconnecting {"attempt":2}']]);
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

  it("writes one line per event through Nest's own Logger, with a context of its own or none", () => {
    const written: string[] = [];
    const keep = (chunk: unknown) => {
      written.push(String(chunk));
      return true;
    };
    // Nest's Logger writes through a static instance an earlier app may have silenced (logger: false): a fresh one.
    NestLogger.overrideLogger(new ConsoleLogger());
    NestLogger.overrideLogger(['log', 'error', 'warn', 'debug', 'verbose', 'fatal']);
    const out = sinon.stub(process.stdout, 'write').callsFake(keep);
    const err = sinon.stub(process.stderr, 'write').callsFake(keep);
    try {
      const fields = { component: 'processor', componentName: 'orders' };
      asPino(new NestLogger('postage'), fields, 'info').warn('quit command: stopping');
      asPino(new NestLogger(), fields, 'info').error({ err: 'boom' }, 'handler failed');
    } finally {
      out.restore();
      err.restore();
    }
    const lines = written
      .join('')
      .replace(new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g'), '')
      .trim()
      .split('\n');
    expect(lines).to.have.length(2);
    expect(lines[0]).to.match(/WARN \[postage\] orders: quit command: stopping$/);
    expect(lines[1]).to.match(/ERROR \[orders\] handler failed \{"err":"boom"\}$/);
  });
});

describe('prettyLine', () => {
  it('turns a JSON log line into one line a person reads: 24-hour time, level, who, message, fields', () => {
    const time = new Date(2026, 0, 2, 15, 4, 5, 67).getTime();
    const line = JSON.stringify({
      level: 40,
      time,
      pid: 1,
      hostname: 'h',
      component: 'processor',
      componentName: 'orders',
      command: 'quit',
      from: { name: 'shop' },
      msg: 'quit command from shop: stopping',
    });
    expect(prettyLine(line)).to.equal(
      '15:04:05.067 WARN  orders (processor): quit command from shop: stopping  command=quit from={"name":"shop"}\n',
    );
  });

  it('keeps a line that is not JSON as it is', () => {
    expect(prettyLine('plain words')).to.equal('plain words\n');
  });
});

import { expect } from 'chai';
import {
  configureLogging,
  GenericProducer,
  MessageHandler,
  MessageProcessor,
  RejectMessage,
  type ExchangeObject,
} from '../lib/index.js';
import { makeLogger, rootLogger, setRootLogger } from '../lib/log.js';
import { brokerUrl } from './support/broker.js';
import { Harness, deferred } from './support/components.js';
import { unique } from './support/topology.js';

/** A pino destination that keeps each line. */
function sink(): { lines: string[]; write: (l: string) => void; when: (re: RegExp) => Promise<string> } {
  const lines: string[] = [];
  const waiting: Array<{ re: RegExp; resolve: (l: string) => void }> = [];
  return {
    lines,
    write: (l) => {
      lines.push(l);
      for (const w of waiting.filter((w) => w.re.test(l))) {
        waiting.splice(waiting.indexOf(w), 1);
        w.resolve(l);
      }
    },
    when: (re) => {
      const seen = lines.find((l) => re.test(l));
      return seen ? Promise.resolve(seen) : new Promise((resolve) => waiting.push({ re, resolve }));
    },
  };
}

/** The keys of one JSON log line, in order, duplicates kept (JSON.parse would hide them). */
function keysOf(line: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  for (const m of line.matchAll(/[{}]|"((?:[^"\\]|\\.)*)"\s*:/g)) {
    if (m[0] === '{') depth++;
    else if (m[0] === '}') depth--;
    else if (depth === 1) keys.push(m[1]);
  }
  return keys;
}

describe('logging', () => {
  let url: string;
  let h: Harness;
  let ex: ExchangeObject;
  let saved: ReturnType<typeof rootLogger>;
  before(async () => {
    url = await brokerUrl();
  });
  beforeEach(() => {
    h = new Harness();
    ex = { name: unique('log-ex'), type: 'direct', durable: false, autoDelete: true };
    saved = rootLogger();
  });
  afterEach(async () => {
    await h.close();
    setRootLogger(saved);
  });

  async function send(name: string) {
    const exchange = ex;
    class P extends GenericProducer {
      static override eks = [[exchange, 'k'] as const];
    }
    const p = await P.create({ url });
    h.onClose(() => p.close());
    await (p as unknown as Record<string, (a?: object) => Promise<void>>)[`message_${name}`]({});
  }

  class Picky extends MessageProcessor {
    @MessageHandler('command', 'odd')
    odd() {
      throw new RejectMessage('odd messages are not wanted here');
    }
  }

  it("logs through a processor's own pino logger, with the reason a handler gave for RejectMessage, and no key twice on a line", async () => {
    const out = sink();
    const logger = makeLogger('info', out).child({ app: 'host' });
    await h.start(
      new Picky({
        url,
        logger,
        eqk: [[ex, [[{ name: unique('log-q'), flags: { exclusive: true } }, 'k']]]],
        fingerprint: { name: 'picky' },
      }),
    );
    await send('odd');
    const line = await out.when(/rejected the message/);
    const parsed = JSON.parse(line) as Record<string, unknown>;
    expect(parsed).to.include({
      app: 'host',
      reason: 'odd messages are not wanted here',
      messageType: 'command',
      messageName: 'odd',
    });
    for (const l of out.lines) {
      const keys = keysOf(l);
      expect(keys, l).to.deep.equal([...new Set(keys)]);
    }
  });

  it('logs through what configureLogging was given, for components created afterwards', async () => {
    const out = sink();
    configureLogging({ level: 'debug', destination: out });
    await h.start(
      new Picky({
        url,
        eqk: [[ex, [[{ name: unique('log-q'), flags: { exclusive: true } }, 'k']]]],
        fingerprint: { name: 'picky' },
      }),
    );
    await send('odd');
    const line = JSON.parse(await out.when(/rejected the message/)) as Record<string, unknown>;
    expect(line).to.include({ component: 'processor', componentName: 'picky' });
    // debug reached it too: the delivery line.
    expect(out.lines.some((l) => l.includes('"msg":"delivery"'))).to.equal(true);
    const host = sink();
    const got = deferred<string>();
    configureLogging({ logger: makeLogger('warn', { write: (l: string) => (host.write(l), got.resolve(l)) }) });
    await h.start(
      new Picky({
        url,
        eqk: [[ex, [[{ name: unique('log-q'), flags: { exclusive: true } }, 'k']]]],
        fingerprint: { name: 'picky2' },
      }),
    );
    await send('odd');
    expect(await got.promise).to.contain('rejected the message');
  });
});

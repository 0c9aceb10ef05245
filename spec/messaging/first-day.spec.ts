/**
 * What a user sees on a first day, where the library can point at the fix:
 * a command nobody handles, a remote quit or restart, a send before ready(),
 * a delay that is not a number.
 */
import { expect } from 'chai';
import {
  GenericApplication,
  GenericProducer,
  MessageHandler,
  MessageProcessor,
  type FingerprintDict,
  type MessageSender,
} from '../../lib/index.js';
import { command } from '../support/schema.js';
import { makeLogger } from '../../lib/log.js';
import { capture } from '../support/log.js';
import { deferred, exchangeFixture } from '../support/components.js';
import { deleteTopology, unique } from '../support/topology.js';

describe('A first day', function () {
  this.timeout(20_000);
  const f = exchangeFixture('first');

  it('warns once per name about a command no handler takes, listing the names the processor does handle', async () => {
    const log = capture();
    class Greeter extends MessageProcessor {
      @MessageHandler('command', 'greet')
      greet() {}
      @MessageHandler('command', 'wave')
      wave() {}
    }
    const p = new Greeter({ url: f.url, logger: log.logger, eqk: [[f.ex, [[f.queue, 'k']]]] });
    let settled = 0;
    const three = deferred();
    p.observe(() => ++settled === 3 && three.resolve());
    await f.h.start(p);
    const send = await f.producer();
    await send.message_gret({});
    await send.message_gret({});
    await send.message_greet({});
    await three.promise;
    const warned = log.records().filter((l) => String(l.msg).startsWith('no handler takes'));
    expect(warned).to.have.length(1);
    expect(warned[0].msg).to.equal(
      'no handler takes command/gret in Greeter: acked and dropped (said once per name). It handles command/quit, ' +
        'restart, greet, wave',
    );
  });

  describe('remote quit and restart', () => {
    it("logs a quit at warn with the sender's fingerprint and tells remoteCommand listeners before stopping", async () => {
      const log = capture();
      class Worker extends MessageProcessor {}
      const p = new Worker({ url: f.url, logger: log.logger, handleSignals: false, eqk: [[f.ex, [[f.queue, 'k']]]] });
      const told = deferred<[string, Partial<FingerprintDict>]>();
      p.on('remoteCommand', (command, from) => told.resolve([command, from]));
      await f.h.start(p);
      const send = await f.producer({ fingerprint: { name: 'ops-console', host: 'ops1', pid: '42' } });
      await send.message_quit({});
      const [command, from] = await told.promise;
      expect(command).to.equal('quit');
      expect(from).to.include({ name: 'ops-console', host: 'ops1', pid: '42' });
      await f.h.running;
      const line = log.records().find((l) => String(l.msg).startsWith('quit command from'));
      expect(line?.level).to.equal(40);
      expect(line?.msg).to.match(/^quit command from ops-console \(producer\) pid 42@ops1 user \S+: stopping$/);
    });

    it('refuses quit and restart with remoteControl: false: logged, acked, and the processor goes on', async () => {
      const log = capture();
      const handled = deferred();
      class Hosted extends MessageProcessor {
        @MessageHandler('command', 'work')
        work() {
          handled.resolve();
        }
      }
      const p = new Hosted({
        url: f.url,
        logger: log.logger,
        handleSignals: false,
        remoteControl: false,
        eqk: [[f.ex, [[f.queue, 'k']]]],
      });
      let told = 0;
      p.on('remoteCommand', () => told++);
      const outcomes: string[] = [];
      p.observe((e) => outcomes.push(`${e.name}:${e.outcome}`));
      await f.h.start(p);
      const send = await f.producer();
      await send.message_quit({});
      await send.message_restart({});
      await send.message_work({});
      await handled.promise;
      expect(outcomes).to.deep.equal(['quit:acked', 'restart:acked', 'work:acked']);
      expect(told).to.equal(0);
      expect(
        log
          .records()
          .filter((l) => /command from .* refused: this processor has remoteControl: false$/.test(String(l.msg))),
      ).to.have.length(2);
    });
  });

  it("says, when a command reaches no queue, to await the consumer's ready() if it is started", async () => {
    const nowhere = { name: unique('first-nowhere'), type: 'direct', durable: false } as const;
    class Early extends GenericProducer {
      static override eks = [[nowhere, 'k'] as const];
      declare message_job: MessageSender;
    }
    const p = await Early.create({ url: f.url, logger: makeLogger('silent') });
    f.h.onClose(() => p.close());
    f.h.onClose(() => deleteTopology([], [nowhere.name]));
    const err = await p.message_job({}).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).to.contain('if it is started, await its ready() before sending');
  });

  it('names a delay that is not a number as it is (NaN, Infinity), not as JSON turns it', async () => {
    const p = await f.producer();
    for (const [bad, shown] of [
      [Number.NaN, 'NaN'],
      [Infinity, 'Infinity'],
    ] as const) {
      const err = await p.message_job({}, { _delay: bad }).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(err?.message).to.match(new RegExp(`not ${shown}$`));
    }
  });

  it('refuses a payload JSON cannot carry before anything is sent, naming where it is', async () => {
    const p = await f.producer();
    const cycle: Record<string, unknown> = { a: 1 };
    cycle.self = cycle;
    for (const [params, text] of [
      [
        { items: [{ price: 1 }, { price: 2 }, { price: 3n }] },
        'parameters.items[2].price is a BigInt, which JSON cannot carry',
      ],
      [{ done: () => 1 }, 'parameters.done is a function'],
      [{ tags: new Set(['a']) }, 'parameters.tags is a Set'],
      [{ byId: new Map([[1, 'a']]) }, 'parameters.byId is a Map'],
      [{ ratio: Number.NaN }, 'parameters.ratio is NaN'],
      [{ max: -Infinity }, 'parameters.max is -Infinity'],
      [{ tree: cycle }, 'parameters.tree.self is a reference to one of its own ancestors (a cycle)'],
    ] as const) {
      const err = await p.message_job(params as Record<string, unknown>).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(err, text).to.be.instanceOf(TypeError);
      expect(err?.message).to.contain(text);
    }
    // What JSON does carry goes: dates, buffers, nulls, nested arrays.
    await p.message_job(
      { at: new Date(0), raw: Buffer.from('x'), nothing: null, grid: [[1, 2], [3]] },
      { _mandatory: false },
    );
  });

  it('refuses a positional argument of the wrong kind, naming the right call (an eqk where a GenericApplication takes its vhost)', () => {
    class Thumbnailer extends GenericApplication {
      constructor(fp: Partial<FingerprintDict>) {
        // As if switched from MessageProcessor keeping super(fp, eqk): an eqk where the vhost belongs.
        super(fp, [[{ name: 'images', type: 'topic' }, [['thumbnails', 'resize']]]] as unknown as string);
      }
    }
    expect(() => new Thumbnailer({ name: 'thumbnailer' })).to.throw(
      TypeError,
      'new Thumbnailer(fingerprint, vhost, groups, hup): argument 2 is the vhost (a string), not an array (an eqk?). ' +
        'Or use the options form, new Thumbnailer({ fingerprint, vhost, groups, hup })',
    );
    expect(() => new MessageProcessor({ name: 'x' }, 'orders' as never)).to.throw(
      TypeError,
      /argument 2 is the eqk \(an array\), not a string/,
    );
  });

  it('logs a content its schema refuses at warn, with the issues and without a stack', async () => {
    const log = capture();
    class Checked extends MessageProcessor {
      @MessageHandler('command', 'resize', { schema: command({ width: 'number' }) })
      resize() {}
    }
    const p = new Checked({ url: f.url, logger: log.logger, eqk: [[f.ex, [[f.queue, 'k']]]] });
    const ended = deferred();
    p.observe(() => ended.resolve());
    await f.h.start(p);
    await (await f.producer()).message_resize({ width: 'wide' });
    await ended.promise;
    const line = log.records().find((l) => String(l.msg).includes("does not match its handler's schema"));
    expect(line?.level).to.equal(40);
    expect(line?.msg).to.equal(
      "command/resize does not match its handler's schema (parameters.width: expected a number, got string); message " +
        'rejected',
    );
    expect(JSON.stringify(line)).to.not.contain('stack');
  });
});

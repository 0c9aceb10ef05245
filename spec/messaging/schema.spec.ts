import { expect } from 'chai';
import {
  GenericProducer,
  MessageHandler,
  MessageProcessor,
  RpcHandler,
  type MessageSender,
  type ParamsOf,
  type RpcSender,
} from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { deferred, exchangeFixture } from '../support/components.js';
import { command } from '../support/schema.js';
import { deleteTopology, getOne, unique } from '../support/topology.js';

const quiet = makeLogger('silent');
const Resize = command({ width: 'number', height: 'number' });

describe('Handler schemas (Standard Schema)', function () {
  this.timeout(20_000);
  const f = exchangeFixture('schema');

  async function sender() {
    const exchange = f.ex;
    class Images extends GenericProducer {
      static override eks = [[exchange, 'k'] as const];
      declare message_resize: MessageSender<ParamsOf<typeof Resize>>;
      declare rpc_area: RpcSender<ParamsOf<typeof Resize>>;
    }
    const p = await Images.create({ url: f.url });
    f.h.onClose(() => p.close());
    return p;
  }

  it('hands a handler the content its schema accepts, and never one it refuses: that goes to the error exchange with the issues, unretried', async () => {
    const errors = unique('schema-errors');
    f.h.onClose(() => deleteTopology([errors], [errors]));
    const got: Array<{ width: number; height: number }> = [];
    const done = deferred();
    let runs = 0;
    class Resizer extends MessageProcessor {
      @MessageHandler('command', 'resize', { schema: Resize })
      resize(content: { parameters: { width: number; height: number } }) {
        runs++;
        got.push(content.parameters);
        done.resolve();
      }
    }
    await f.h.start(
      new Resizer({
        url: f.url,
        logger: quiet,
        errorExchange: errors,
        retry: { attempts: 3, backoffMs: 1 },
        eqk: [[f.ex, [[f.queue, 'k']]]],
      }),
    );
    const p = await sender();
    await p.message_resize({ width: 'wide', height: 2 } as never);
    const dead = await getOne(errors, 10_000);
    expect(dead, 'a dead letter').to.not.equal(false);
    const h = (dead as Exclude<typeof dead, false>).properties.headers!;
    expect(h['x-error-name']).to.equal('ValidationError');
    expect(h['x-attempts']).to.equal(1);
    expect(JSON.parse(String(h['x-validation-issues']))).to.deep.equal([
      { message: 'expected a number, got string', path: ['parameters', 'width'] },
    ]);
    expect(h['x-error-message']).to.match(/command\/resize failed its schema: parameters.width: expected a number/);
    await p.message_resize({ width: 3, height: 4 });
    await done.promise;
    expect(got).to.deep.equal([{ width: 3, height: 4 }]);
    expect(runs).to.equal(1);
  });

  it('gives an RPC caller a MessageResultError that lists the issues; an async schema and its transform are honoured', async () => {
    class Area extends MessageProcessor {
      @RpcHandler('command', 'area', {
        schema: command({ width: 'number', height: 'number' }, { coerce: true, async: true }),
      })
      area(content: { parameters: { width: number; height: number } }) {
        return content.parameters.width * content.parameters.height;
      }
    }
    await f.h.start(new Area({ url: f.url, logger: quiet, eqk: [[f.ex, [[f.queue, 'k']]]] }));
    const p = await sender();
    const ok = await p.rpc_area({ width: '3', height: 4 } as never, { _timeout: 10, _max_retry: 0 });
    expect(ok.body.content).to.include({ type: 'success', value: 12 });
    const bad = await p.rpc_area({ height: 4 } as never, { _timeout: 10, _max_retry: 0 });
    expect(bad.ok).to.equal(false);
    expect(bad.body.content.type).to.equal('error');
    expect(bad.body.content.message).to.match(/parameters.width: expected a number, got nothing/);
  });

  it('refuses a schema that is not a Standard Schema when the class is defined', () => {
    expect(() => MessageHandler('command', 'x', { schema: { validate: () => true } as never })).to.throw(
      TypeError,
      /Standard Schema/,
    );
  });
});

/**
 * Hostile: presence where the processor is busy or runs every delivery through a database store. A `ping` is
 * operations traffic: it must be answered while handlers are busy, and must not leave rows in the store's inbox or
 * outbox (or wait on the database).
 */
import { expect } from 'chai';
import type pg from 'pg';
import { MessageHandler, MessageProcessor } from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { PostgresStore } from '../../lib/stores/postgres/index.js';
import { pinged, postage } from '../support/cli.js';
import { envelopeBytes } from '../support/envelopes.js';
import { deferred, exchangeFixture } from '../support/components.js';
import { publishRaw, unique } from '../support/topology.js';
import { dropSchema, pgPool, uniqueSchema } from '../stores/support.js';

const envelope = envelopeBytes('slow');

describe('Hostile: presence under load and under a store', function () {
  this.timeout(60_000);
  const f = exchangeFixture('hp');

  it('answers ping while its only handler slot is busy', async () => {
    const name = unique('busy').replace(/\./g, '-');
    const gate = deferred();
    const started = deferred();
    class Busy extends MessageProcessor {
      @MessageHandler('command', 'slow')
      async slow() {
        started.resolve();
        await gate.promise;
      }
    }
    const p = new Busy({
      url: f.url,
      logger: makeLogger('silent'),
      handleSignals: false,
      concurrency: 1,
      fingerprint: { name },
      eqk: [[f.ex, [[f.queue, 'k']]]],
    });
    await f.h.start(p);
    f.h.onClose(async () => gate.resolve());
    await publishRaw(f.ex.name, 'k', envelope);
    await started.promise;
    const rows = pinged(await postage(['ping', name, '--timeout', '2']));
    gate.resolve();
    expect(
      rows.map(([n]) => n),
      'a busy processor is invisible to ping',
    ).to.deep.equal([name]);
  });

  describe('with a PostgreSQL store', () => {
    let pool: pg.Pool;
    const schema = uniqueSchema('x1_hostile_presence');
    before(async () => {
      pool = await pgPool();
      await pool.query(`CREATE SCHEMA "${schema}"`);
    });
    after(async () => {
      await dropSchema(pool, schema);
      await pool.end();
    });

    it('answers ping and describe without writing inbox or outbox rows', async () => {
      const name = unique('stored').replace(/\./g, '-');
      class Stored extends MessageProcessor {
        @MessageHandler('command', 'slow')
        slow() {}
      }
      const store = new PostgresStore({ pool, schema });
      const p = new Stored({
        url: f.url,
        logger: makeLogger('silent'),
        handleSignals: false,
        fingerprint: { name },
        eqk: [[f.ex, [[f.queue, 'k']]]],
        store,
      });
      await f.h.start(p);
      await store.migrate();
      const count = async () => {
        const { rows } = await pool.query<{ t: string }>(
          `SELECT table_name AS t FROM information_schema.tables WHERE table_schema = $1`,
          [schema],
        );
        const out: Record<string, number> = {};
        for (const { t } of rows)
          out[t] = (await pool.query(`SELECT count(*)::int AS n FROM "${schema}"."${t}"`)).rows[0].n as number;
        return out;
      };
      const before = await count();
      expect(pinged(await postage(['ping', name, '--timeout', '2'])).map(([n]) => n)).to.deep.equal([name]);
      const d = await postage(['describe', name, '--json', '--timeout', '2']);
      expect(d.code, d.stderr).to.equal(0);
      expect(await count(), 'presence traffic went through the store').to.deep.equal(before);
    });
  });
});

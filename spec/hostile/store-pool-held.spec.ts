/**
 * A store's pool whose connections the application holds (a client it forgot
 * to release, or its own work on the same pool), made the way the docs make
 * it: `new pg.Pool({ connectionString, max })`, which waits for a free
 * connection for as long as it takes. ready() counts only the processors'
 * share; a run must not wait for ever, in silence, with close() behind it.
 */
import { expect } from 'chai';
import pg from 'pg';
import { MessageHandler, MessageProcessor } from '../../lib/index.js';
import { PostgresStore } from '../../lib/stores/postgres/index.js';
import { deferred, exchangeFixture } from '../support/components.js';
import { capture } from '../support/log.js';
import { within } from '../support/wait.js';
import { dropSchema, PG_URL, uniqueSchema } from '../stores/support.js';

describe('PostgresStore on a pool the application has drained', function () {
  this.timeout(60_000);
  const f = exchangeFixture('pool-held');

  it('gives a run no connection came for back to the broker with a line that says why, and lets close() finish', async () => {
    const pool = new pg.Pool({ connectionString: PG_URL, max: 2 });
    pool.on('error', () => undefined);
    const schema = uniqueSchema('postage_pool_held');
    const held: pg.PoolClient[] = [];
    try {
      const store = new PostgresStore({ pool, schema });
      await store.migrate();
      const log = capture('warn');
      const ran = deferred();
      class Jobs extends MessageProcessor {
        @MessageHandler('command', 'job')
        job() {
          ran.resolve();
        }
      }
      const { proc, events, settled } = await f.start(Jobs, { store, concurrency: 1, logger: log.logger });
      // The application takes every connection and keeps them.
      held.push(await pool.connect(), await pool.connect());
      const p = await f.producer();
      await p.message_job({});
      await settled(20_000);
      expect(events[0].outcome).to.equal('deferred');
      expect(log.lines.join('\n')).to.match(/no connection of the store's pool came free within/);
      // Nothing waits on the pool any more: close() finishes while the application still holds its connections.
      await within(proc.close(), { timeout: 5_000, message: 'close() while the pool had no free connection' });
      // Once the application gives them back, the deferred copy runs.
      for (const c of held.splice(0)) c.release();
      const again = await f.start(Jobs, { store, concurrency: 1 });
      await within(ran.promise, { timeout: 15_000, message: 'the deferred message run once connections were free' });
      await again.proc.close();
    } finally {
      for (const c of held) c.release();
      await dropSchema(pool, schema).catch(() => undefined);
      await pool.end();
    }
  });
});

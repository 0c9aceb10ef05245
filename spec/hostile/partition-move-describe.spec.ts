/**
 * Hostile: `describe` while a partition moves. The replica giving it up finishes what it holds of it first, and the
 * broker keeps it the active consumer until then; the new owner is subscribed, as a standby. Describe (and the
 * dashboard, which shows it) must say so: the old owner letting go, the new one waiting, not the new one active and
 * the old one holding nothing.
 */
import { expect } from 'chai';
import { MessageHandler, MessageProcessor } from '../../lib/index.js';
import { deferred, Harness } from '../support/components.js';
import { partitionedFixture } from '../support/partitions.js';
import { until } from '../support/wait.js';

describe('Hostile: describe while a partition moves between replicas', function () {
  this.timeout(60_000);

  it('says the old owner lets it go and the new one waits as a standby, until the old one has finished', async () => {
    const f = await partitionedFixture('pmove', 2, 500);
    const gate = deferred();
    let started = 0;
    class Worker extends MessageProcessor {
      @MessageHandler('command', 'work')
      async work() {
        started++;
        await gate.promise;
      }
    }
    const h = new Harness();
    const [a, b] = [1, 2].map((i) => new Worker(f.options(i, { concurrency: 2 })));
    const sender = await f.sender();
    try {
      await h.start(a);
      await f.activeOnAll(a);
      // A handler running on each partition (keys until both partitions have one), held there.
      for (let i = 0; i < 40; i++) await sender.message_work({}, { _partition_key: `k${i}` });
      await until(() => started === 2, { message: 'a handler running on each partition' });
      await h.start(b);
      const moving = await until(
        async () => {
          const [da, db] = [(await a.rpcDescribe()).partitions![0], (await b.rpcDescribe()).partitions![0]];
          return da.lettingGo?.length === 1 && db.standbyHere?.length === 1 ? { da, db } : undefined;
        },
        { message: 'the first replica letting a partition go, the second waiting for it' },
      );
      const p = moving.da.lettingGo![0];
      expect(moving.db.standbyHere).to.deep.equal([p]);
      expect(moving.db.activeHere).to.not.include(p);
      expect(moving.da.activeHere).to.not.include(p);
      gate.resolve();
      await until(
        async () => {
          const [da, db] = [(await a.rpcDescribe()).partitions![0], (await b.rpcDescribe()).partitions![0]];
          return db.activeHere.includes(p) && da.lettingGo?.length === 0 && db.standbyHere?.length === 0;
        },
        { timeout: 15_000, message: `the second replica active on ${p} once the first let it go` },
      );
    } finally {
      gate.resolve();
      await sender.close();
      await h.close();
      await f.remove();
    }
  });
});

/**
 * Hostile: an operator deletes the fanout exchange over which the replicas of a partitioned processor hear each other
 * (`QUEUE.replicas`). Nothing is cancelled and no channel closes until a replica's next beat is published to it; the
 * replicas must notice that their beats no longer come back, declare the exchange and their binding again, and go on
 * spreading the partitions: over those running, and over a replica that joins after.
 */
import { expect } from 'chai';
import { MessageHandler, MessageProcessor, type PartitionMove } from '../../lib/index.js';
import { capture } from '../support/log.js';
import { Harness } from '../support/components.js';
import { partitionedFixture, settledSpread } from '../support/partitions.js';
import { asOperator } from '../support/topology.js';

describe('Hostile: an operator deletes the replicas exchange of a partitioned processor', function () {
  this.timeout(60_000);

  it('declares it again: the running replicas keep their spread, and one that joins after gets its share', async () => {
    const f = await partitionedFixture('rdel', 6, 300);
    class Worker extends MessageProcessor {
      @MessageHandler('command', 'work')
      work() {}
    }
    const logs = [1, 2, 3].map(() => capture('warn'));
    const h = new Harness();
    const [a, b, c] = [1, 2, 3].map((i) => new Worker(f.options(i, { logger: logs[i - 1].logger })));
    try {
      await h.start(a);
      await h.start(b);
      await settledSpread([a, b], 6);
      const moves: PartitionMove[] = [];
      for (const r of [a, b]) r.on('partitionMove', (m: PartitionMove) => moves.push(m));
      await asOperator((ch) => ch.deleteExchange(`${f.queue}.replicas`));
      // Each replica says it declares the exchange again, and the two hear each other on it: a beat of each after
      // both said so (5 beats in all is twice the 2.5 after which a replica that hears nobody forgets the others).
      await Promise.all(logs.slice(0, 2).map((l) => l.when(/no longer come back over/, 5_000)));
      const [da, db] = await Promise.all([a.rpcDescribe(), b.rpcDescribe()]);
      expect(da.partitions![0].replicas).to.have.length(2);
      expect(db.partitions![0].replicas).to.have.length(2);
      await settledSpread([a, b], 6, 5_000);
      // Not one partition changed hands for a replica forgotten or heard anew (a start's own moves may still be
      // reported as the two settle): neither replica forgot the other.
      expect(moves.filter((m) => m.reason !== 'start')).to.deep.equal([]);
      await h.start(c);
      await settledSpread([a, b, c], 6);
    } finally {
      await h.close();
      await f.remove();
    }
  });
});

/**
 * Hostile: a fleet of partitioned replicas started all at once on a broker that has no partitions yet (a first
 * deployment, every pod of a Deployment at once). ready() checks the broker's partition count and then declares the
 * partitions; without anything holding the others off, one replica's check sees another's declaration half done, and
 * replicas with different counts each see an empty broker.
 */
import { expect } from 'chai';
import { MessageProcessor, PartitionCountMismatch, type ExchangeObject } from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { brokerUrl } from '../support/broker.js';
import { deleteTopology, unique } from '../support/topology.js';

const ROUNDS = 6;

describe('Hostile: partitioned replicas started all at once', function () {
  this.timeout(120_000);

  async function startTogether(counts: number[]): Promise<Array<PromiseSettledResult<void>>> {
    const url = await brokerUrl();
    const exchange: ExchangeObject = { name: unique('prace-ex'), type: 'direct' };
    const queue = unique('prace-q');
    const replicas = counts.map(
      (partitions, i) =>
        new MessageProcessor({
          url,
          logger: makeLogger('silent'),
          fingerprint: { name: 'worker', pid: `${process.pid}-${i}` },
          partitions,
          handleSignals: false,
          eqk: [[exchange, [[queue, 'work']]]],
        }),
    );
    try {
      return await Promise.allSettled(replicas.map((r) => r.ready()));
    } finally {
      await Promise.all(replicas.map((r) => r.close().catch(() => undefined)));
      await deleteTopology(
        Array.from({ length: Math.max(...counts) }, (_, i) => `${queue}.p${i}`),
        [`${queue}.partitions`, `${queue}.replicas`, exchange.name],
      );
    }
  }

  it('starts every replica of the same count, none refused for a count the broker is still being given', async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const results = await startTogether([8, 8, 8]);
      const refused = results.flatMap((r) => (r.status === 'rejected' ? [(r.reason as Error).message] : []));
      expect(refused, `round ${round}`).to.deep.equal([]);
    }
  });

  it('refuses all but one count when replicas of different counts start at once, naming the one the broker has', async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const results = await startTogether([8, 12]);
      const started = results.flatMap((r, i) => (r.status === 'fulfilled' ? [[8, 12][i]] : []));
      const refused = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
      expect(started, `round ${round}: replicas started`).to.have.length(1);
      expect(refused[0], `round ${round}`).to.be.instanceOf(PartitionCountMismatch);
      expect(refused[0], `round ${round}`).to.deep.include({ found: started[0] });
    }
  });
});

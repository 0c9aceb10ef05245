import { expect } from 'chai';
import { assignPartitions } from '../../lib/receive/partitions/assignment.js';

const parts = (n: number) => Array.from({ length: n }, (_, i) => `orders.p${i}`);
const ids = (r: number) => Array.from({ length: r }, (_, i) => `replica-${i}`);

/** How many partitions each replica gets. */
function counts(owners: Map<string, string>, replicas: string[]): number[] {
  return replicas.map((r) => [...owners.values()].filter((o) => o === r).length);
}

describe('assignPartitions (which replica consumes which partition)', () => {
  it('gives every partition to one replica, and each replica ⌊N/R⌋ or ⌈N/R⌉ of them', () => {
    for (const n of [1, 2, 7, 8, 12, 64, 256])
      for (const r of [1, 2, 3, 5, 8, 13]) {
        const owners = assignPartitions(parts(n), ids(r));
        expect(owners.size, `${n} over ${r}`).to.equal(n);
        for (const c of counts(owners, ids(r)))
          expect(c, `${n} over ${r}`).to.be.within(Math.floor(n / r), Math.ceil(n / r));
      }
  });

  it('comes out the same whatever order a replica learned of the others in', () => {
    const a = assignPartitions(parts(12), ['c', 'a', 'b']);
    const b = assignPartitions(parts(12), ['b', 'c', 'a', 'a']);
    expect([...a].sort()).to.deep.equal([...b].sort());
  });

  it('leaves the replicas past N idle when there are more replicas than partitions', () => {
    const owners = assignPartitions(parts(3), ids(5));
    expect(counts(owners, ids(5)).sort()).to.deep.equal([0, 0, 1, 1, 1]);
  });

  it('moves few partitions besides those a joining replica takes', () => {
    const before = assignPartitions(parts(24), ids(3));
    const after = assignPartitions(parts(24), ids(4));
    const moved = parts(24).filter((p) => before.get(p) !== after.get(p));
    // The newcomer takes 6; a plain round robin over sorted ids would move 18 here.
    expect(moved.filter((p) => after.get(p) !== 'replica-3').length).to.be.at.most(4);
  });

  it('assigns nothing without replicas', () => {
    expect(assignPartitions(parts(4), []).size).to.equal(0);
  });
});

import { expect } from 'chai';
import { backoffMs, jittered } from '../../lib/backoff.js';

describe('backoff', () => {
  it('doubles from the initial delay up to the maximum', () => {
    expect([0, 1, 2, 3, 10].map((a) => backoffMs(a, 100, 1000))).to.deep.equal([100, 200, 400, 800, 1000]);
  });

  it('spreads a delay by its jitter, and never past the maximum (10 s stays 10 s, not 12)', () => {
    expect(jittered(1000, 0.2, 10_000, () => 0)).to.equal(800);
    expect(jittered(1000, 0.2, 10_000, () => 0.5)).to.equal(1000);
    expect(jittered(1000, 0.2, 10_000, () => 0.999999)).to.be.closeTo(1200, 0.01);
    expect(jittered(backoffMs(20, 100, 10_000), 0.2, 10_000, () => 0.999999)).to.equal(10_000);
    expect(jittered(backoffMs(20, 100, 10_000), 0.2, 10_000, () => 0)).to.equal(8000);
  });
});

import { expect } from 'chai';
import sinon from 'sinon';
import { reconnectDelayMs, retrying } from '../../lib/backoff.js';

describe('retrying', () => {
  let clock: sinon.SinonFakeTimers;
  beforeEach(() => {
    clock = sinon.useFakeTimers();
  });
  afterEach(() => clock.restore());

  /** Fails `failures` times, then resolves to the attempt number it succeeded on. */
  const flaky = (failures: number) => async (n: number) => {
    if (n < failures) throw new Error(`failure ${n}`);
    return n;
  };
  const still = () => ({ random: () => 0.5 });

  it('resolves to the first success, waiting the reconnect options’ delays between failures', async () => {
    const waits: number[] = [];
    const done = retrying(flaky(3), {
      ...still(),
      backoff: { initialMs: 10, maxMs: 30, factor: 2 },
      onFailure: (_err, _n, ms) => waits.push(ms),
    });
    await clock.runAllAsync();
    expect(await done).to.equal(3);
    expect(waits).to.deep.equal([10, 20, 30]);
  });

  it('fills what the options leave out from the documented defaults (100 ms doubling to 10 s, ±20 %)', () => {
    expect([0, 1, 7, 20].map((n) => reconnectDelayMs(n, {}, () => 0.5))).to.deep.equal([100, 200, 10_000, 10_000]);
    expect(reconnectDelayMs(0, { initialMs: undefined }, () => 0)).to.equal(80);
    expect(reconnectDelayMs(0, { jitter: 0 }, () => 0)).to.equal(100);
  });

  it('waits before the first attempt with delayFirst, starting at firstWait', async () => {
    const waits: Array<[number, number]> = [];
    const tries: number[] = [];
    const done = retrying(
      async (n) => {
        tries.push(Date.now());
        return n;
      },
      { ...still(), delayFirst: true, firstWait: 2, onWait: (w, ms) => waits.push([w, ms]) },
    );
    await clock.tickAsync(399);
    expect(tries).to.deep.equal([]);
    await clock.tickAsync(1);
    expect(await done).to.equal(0);
    expect(waits).to.deep.equal([[2, 400]]);
    expect(tries).to.deep.equal([400]);
  });

  it('ends with the error onFailure throws, trying no more', async () => {
    let tries = 0;
    const done = retrying(
      async () => {
        tries++;
        throw new Error('refused');
      },
      {
        onFailure: (err) => {
          throw err;
        },
      },
    );
    await clock.runAllAsync();
    let error: unknown;
    await done.catch((err: unknown) => (error = err));
    expect((error as Error).message).to.equal('refused');
    expect(tries).to.equal(1);
  });

  it('resolves to undefined as soon as its signal is aborted mid-wait, leaving no timer behind', async () => {
    const stop = new AbortController();
    let tries = 0;
    const done = retrying(
      async () => {
        tries++;
        throw new Error('down');
      },
      { ...still(), signal: stop.signal, backoff: { initialMs: 60_000 } },
    );
    await clock.tickAsync(0);
    expect(tries).to.equal(1);
    expect(clock.countTimers()).to.equal(1);
    stop.abort();
    expect(await done).to.equal(undefined);
    expect(clock.countTimers()).to.equal(0);
    expect(tries).to.equal(1);
  });

  it('stops once keepGoing says no, asked before each attempt and after each failure', async () => {
    let tries = 0;
    let go = true;
    const done = retrying(
      async () => {
        tries++;
        go = tries < 2;
        throw new Error('down');
      },
      { ...still(), keepGoing: () => go },
    );
    await clock.runAllAsync();
    expect(await done).to.equal(undefined);
    expect(tries).to.equal(2);
    expect(await retrying(flaky(0), { keepGoing: () => false })).to.equal(undefined);
  });
});

/**
 * Fault: a consumer process crashes (SIGKILL) holding unacked messages.
 * Injected by killing a component process while it works through 200
 * messages with a slow handler and a prefetch of 10 (shared broker: nothing
 * stops it). Must hold: every message was either handled or is back in the
 * queue for the next consumer, including the ones the dead process had
 * prefetched or was handling.
 */
import { expect } from 'chai';
import { brokerUrl } from '../support/broker.js';
import { signalledMidBurst } from '../support/slow-receiver.js';

describe('fault: a consumer crashes with unacked messages', function () {
  this.timeout(60_000);
  const N = 200;

  it('loses none: what it had not acked goes back to the queue', async () => {
    const { r, exited, left, lost } = await signalledMidBurst(await brokerUrl(), 'SIGKILL', N);
    expect(exited).to.equal('SIGKILL');
    expect(lost).to.deep.equal([]);
    // The handler that was running when the process died never finished: its message is back.
    expect([...r.started].filter((id) => !r.handled.has(id)).every((id) => left.has(id))).to.equal(true);
    expect(r.handled.size).to.be.lessThan(N);
  });
});

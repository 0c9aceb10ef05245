/**
 * Fault: SIGTERM during a burst. Injected by signalling a component process
 * while it works through 200 messages with a slow handler (shared broker:
 * nothing stops it). Must hold: the process ends; every message was either
 * handled (and acked) or is back in the queue — none is lost.
 */
import { expect } from 'chai';
import { brokerUrl } from '../support/broker.js';
import { drainItems, publishItems, signalledMidBurst, startSlowReceiver } from '../support/slow-receiver.js';
import { deleteTopology, unique } from '../support/topology.js';

describe('fault: SIGTERM during a burst', function () {
  this.timeout(60_000);
  const N = 200;

  it('finishes the handler in flight, acks it, and leaves every other message in the queue', async () => {
    const { r, exited, left, lost } = await signalledMidBurst(await brokerUrl(), 'SIGTERM', N);
    expect(exited).to.equal('SIGTERM');
    expect(lost).to.deep.equal([]);
    expect(r.handled.size).to.be.lessThan(N);
    // Graceful: the handler in flight when the signal came ran to the end...
    expect([...r.started].filter((id) => !r.handled.has(id))).to.deep.equal([]);
    // ...and everything handled was acked, so it is not waiting to be handled again.
    expect([...r.handled].filter((id) => left.has(id))).to.deep.equal([]);
  });

  it('leaves SIGTERM to the host with handleSignals: false (the process ends at once, the message in flight goes back to the queue)', async () => {
    const url = await brokerUrl();
    const queue = unique('sigterm-host');
    const r = await startSlowReceiver(url, queue, { HANDLE_SIGNALS: 'false', SLOW_MS: '5000' });
    await publishItems(url, queue, 3);
    await r.whenStarted(1);
    r.signal('SIGTERM');
    expect(await r.exited).to.equal('SIGTERM');
    const left = await drainItems(url, queue);
    await deleteTopology([queue]);
    expect(r.handled.size).to.equal(0);
    expect([...left].sort()).to.deep.equal([0, 1, 2]);
  });

  it('closes anyway once drainTimeoutMs has passed, and the message in flight goes back to the queue', async () => {
    const url = await brokerUrl();
    const queue = unique('sigterm-drain');
    const r = await startSlowReceiver(url, queue, { DRAIN_MS: '200', SLOW_MS: '8000' });
    await publishItems(url, queue, 2);
    await r.whenStarted(1);
    const signalled = Date.now();
    r.signal('SIGTERM');
    expect(await r.exited).to.equal('SIGTERM');
    // Well before the 8 s handler could have finished.
    expect(Date.now() - signalled).to.be.below(5000);
    const left = await drainItems(url, queue);
    await deleteTopology([queue]);
    expect(r.handled.size).to.equal(0);
    expect([...left].sort()).to.deep.equal([0, 1]);
  });
});

/**
 * The dashboard of a partitioned processor in Chromium, as replicas come and go: a replica that left holds no
 * partition, and its card (kept, marked down) must not go on saying where it was active.
 */
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';
import { MessageHandler, MessageProcessor, startDashboard, type ExchangeObject } from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { brokerUrl, throwawayVhost } from '../support/broker.js';
import { Harness } from '../support/components.js';
import { settledSpread } from '../support/partitions.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

describe('the dashboard of a partitioned processor, in Chromium', function () {
  this.timeout(90_000);

  it('says a replica that left is active on no partition, and the one left on all of them', async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: install Debian's, or set CHROMIUM_PATH`);
    const url = await throwawayVhost(await brokerUrl(), 'browserparts');
    class Ledger extends MessageProcessor {
      @MessageHandler('command', 'post')
      post() {}
    }
    const replica = (i: number) =>
      new Ledger({
        url,
        logger: makeLogger('silent'),
        handleSignals: false,
        fingerprint: { name: 'ledger', pid: `r${i}` },
        partitions: 2,
        rebalance: { heartbeatMs: 500 },
        eqk: [[{ name: 'ledger-ex', type: 'direct' } as ExchangeObject, [['ledger', 'post']]]],
      });
    const h = new Harness();
    const [a, b] = [replica(1), replica(2)];
    await h.start(a);
    await h.start(b);
    await settledSpread([a, b], 2);
    const d = await startDashboard({ url, refreshMs: 250 });
    h.onClose(() => d.close());
    let browser: Browser | undefined;
    try {
      browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--headless=new'] });
      const page = await browser.newPage();
      await page.goto(d.url);
      const card = (pid: string) =>
        page.locator('.component[data-name="ledger"]', { has: page.locator('span.muted', { hasText: `· ${pid}@` }) });
      await card('r2')
        .locator('.partitions', { hasText: /active here ledger\.p\d · / })
        .waitFor();

      await b.close();
      await settledSpread([a], 2);
      await page.locator('.component.down[data-name="ledger"]').waitFor({ timeout: 15_000 });
      await card('r1').locator('.partitions', { hasText: 'active here ledger.p0, ledger.p1 ·' }).waitFor();
      const left = await card('r2').locator('.partitions').textContent();
      expect(left).to.not.match(/active here ledger/);
      expect(left).to.match(/down/);
    } finally {
      await browser?.close();
      await h.close();
    }
  });
});

/**
 * The dashboard in a real browser: Debian's Chromium, driven by
 * playwright-core (which downloads nothing). Runs apart, `npm run
 * test:browser`, since it needs `apt-get install chromium`; `.ci/run` runs it.
 */
import { expect } from 'chai';
import { existsSync, copyFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startDashboard, type Dashboard } from '../../lib/index.js';
import { brokerUrl, throwawayVhost } from '../support/broker.js';
import { startFleet, type Fleet } from '../support/fleet.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

describe('the dashboard page, in Chromium', function () {
  this.timeout(90_000);
  let fleet: Fleet;
  let d: Dashboard;
  let browser: Browser;
  let page: Page;

  before(async () => {
    if (!existsSync(CHROMIUM))
      throw new Error(`no Chromium at ${CHROMIUM}: install Debian's (apt-get install chromium), or set CHROMIUM_PATH`);
    const url = await throwawayVhost(await brokerUrl(), 'browser');
    fleet = await startFleet(url);
    d = await startDashboard({ url, refreshMs: 250 });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--headless=new'] });
    page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  });
  after(async () => {
    await browser?.close();
    await d?.close();
    await fleet?.close();
  });

  const errorCount = () => page.locator(`.error-queue[data-queue="${fleet.errorQueue}"] .count`);

  it('shows both running components appear, the error count rise as a handler fails, and fall after replay', async () => {
    await page.goto(d.url);
    // The token became a cookie scripts cannot read, and left the address bar (and so history and Referer).
    expect(page.url()).to.equal(new URL('/', d.url).href);
    expect(await page.evaluate('document.cookie')).to.equal('');
    await page.locator('.component.up[data-name="orders"]').waitFor();
    await page.locator('.component.up[data-name="invoices"]').waitFor();
    await page.locator('#graph svg .node.component').first().waitFor();
    expect(await page.locator('#graph svg .node.component').count()).to.equal(2);

    await fleet.order(4);
    await errorCount().filter({ hasText: /^4$/ }).waitFor();
    await page.locator(`.error-queue[data-queue="${fleet.errorQueue}"] .inspect`).click();
    await page.locator('#error-detail table.groups td', { hasText: 'TypeError' }).waitFor();
    await page.locator('#recent a').first().click();
    await page.locator('#sequence svg .message').first().waitFor({ state: 'attached' });

    const shot = join(mkdtempSync(join(tmpdir(), 'postage-dashboard-')), 'dashboard.png');
    await page.screenshot({ path: shot, fullPage: true });
    // docs/operations.md shows this picture: refreshed on request, so a run does not rewrite a tracked file.
    if (process.env.UPDATE_SCREENSHOT === '1') copyFileSync(shot, 'docs/images/dashboard.png');

    fleet.broken = false;
    const handled = fleet.expect(4);
    await page.locator(`.error-queue[data-queue="${fleet.errorQueue}"] .replay-all`).click();
    await handled;
    await errorCount().filter({ hasText: /^0$/ }).waitFor();
    expect(await errorCount().textContent()).to.equal('0');
    expect(await page.locator('#notice').textContent()).to.equal('replayed 4');
  });
});

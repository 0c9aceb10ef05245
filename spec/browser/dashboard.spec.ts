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

/**
 * What sticks out of its panel on the page: every section whose content is wider than it, and every element drawn
 * past its section's right edge (a button cut off at the panel's edge), as `section#id: what`.
 */
async function overflowing(page: Page): Promise<string[]> {
  // Runs in the page, where the DOM is: the specs' types have no DOM, so it is written against a minimal shape.
  type Box = { right: number; width: number };
  type Node = { tagName: string; textContent: string | null; getBoundingClientRect(): Box };
  type Section = Node & {
    id: string;
    hidden: boolean;
    scrollWidth: number;
    clientWidth: number;
    querySelectorAll(q: string): ArrayLike<Node>;
  };
  return page.evaluate(() => {
    const document = (globalThis as unknown as { document: { querySelectorAll(q: string): ArrayLike<Section> } })
      .document;
    const found: string[] = [];
    for (const s of Array.from(document.querySelectorAll('section'))) {
      if (s.hidden) continue;
      const edge = s.getBoundingClientRect().right;
      if (s.scrollWidth > s.clientWidth + 1)
        found.push(`section#${s.id}: content ${s.scrollWidth} px in ${s.clientWidth}`);
      for (const e of Array.from(s.querySelectorAll('button, table, svg, input, a, pre'))) {
        const r = e.getBoundingClientRect();
        if (r.width > 0 && r.right > edge + 1)
          found.push(
            `section#${s.id}: ${e.tagName.toLowerCase()} '${(e.textContent ?? '').slice(0, 30)}' ends at ${r.right}`,
          );
      }
    }
    return found;
  });
}

/** Screenshots for docs/images, refreshed on request (UPDATE_SCREENSHOT=1), so a run does not rewrite tracked files. */
async function screenshot(page: Page, name: string): Promise<void> {
  const shot = join(mkdtempSync(join(tmpdir(), 'postage-dashboard-')), name);
  await page.screenshot({ path: shot, fullPage: true });
  if (process.env.UPDATE_SCREENSHOT === '1') copyFileSync(shot, `docs/images/${name}`);
}

describe('the dashboard page, in Chromium', function () {
  this.timeout(90_000);
  let fleet: Fleet;
  let d: Dashboard;
  let browser: Browser;
  let page: Page;
  /** Every response the page got that was not found (a favicon it asked for, say). */
  const missing: string[] = [];

  before(async () => {
    if (!existsSync(CHROMIUM))
      throw new Error(`no Chromium at ${CHROMIUM}: install Debian's (apt-get install chromium), or set CHROMIUM_PATH`);
    const url = await throwawayVhost(await brokerUrl(), 'browser');
    fleet = await startFleet(url);
    d = await startDashboard({ url, refreshMs: 250 });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--headless=new'] });
    page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    page.on('response', (r) => {
      if (r.status() === 404) missing.push(r.url());
    });
  });
  after(async () => {
    await browser?.close();
    await d?.close();
    await fleet?.close();
  });

  const errorCount = () => page.locator(`.error-queue[data-queue="${fleet.errorQueue}"] .count`);

  it('shows both running components, the error count rise as a handler fails, and fall after replay', async () => {
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

    fleet.broken = false;
    const handled = fleet.expect(4);
    await page.locator(`.error-queue[data-queue="${fleet.errorQueue}"] .replay-all`).click();
    await handled;
    await errorCount().filter({ hasText: /^0$/ }).waitFor();
    expect(await errorCount().textContent()).to.equal('0');
    expect(await page.locator('#notice').textContent()).to.equal('replayed 4');
  });

  it("draws an RPC's reply in its conversation, and names each conversation by its whole id", async () => {
    expect(await fleet.quote()).to.equal(42);
    const call = page.locator('#recent tr', { hasText: 'command/quote' }).first();
    await call.waitFor();
    const link = call.locator('a.conversation');
    const id = (await link.textContent()) ?? '';
    // The whole id, which the tooltip names too: two calls whose ids begin alike no longer look the same.
    expect(id.length).to.be.greaterThan(12);
    expect(await link.getAttribute('title')).to.contain(id);
    await link.click();
    await page.locator('#sequence svg .message.reply').first().waitFor({ state: 'attached' });
    expect(await page.locator('#sequence svg text', { hasText: 'reply to command/quote' }).count()).to.equal(1);
  });

  it('keeps every panel within its edges at 1280 and 1600 px wide, an error queue open', async () => {
    fleet.broken = true;
    await fleet.order(2);
    await errorCount().filter({ hasText: /^2$/ }).waitFor();
    await page.locator(`.error-queue[data-queue="${fleet.errorQueue}"] .inspect`).click();
    await page.locator('#error-detail table.messages tbody tr').first().waitFor();
    for (const width of [1280, 1600]) {
      await page.setViewportSize({ width, height: 1000 });
      expect(await overflowing(page), `at ${width} px`).to.deep.equal([]);
      if (width === 1280) await screenshot(page, 'dashboard.png');
    }
  });

  it('tells the time on a 24-hour clock everywhere, and asks for nothing it does not have (a favicon)', async () => {
    expect(await page.locator('#live').textContent()).to.match(/^live · \d\d:\d\d:\d\d$/);
    for (const t of await page.locator('#recent td.when').allTextContents())
      expect(t).to.match(/^\d\d:\d\d:\d\d\.\d{3}$/);
    expect(missing).to.deep.equal([]);
  });

  it("shows a newcomer's empty fleet plainly: no component yet, no error queue, nothing out of its panel", async () => {
    const empty = await startDashboard({
      url: await throwawayVhost(await brokerUrl(), 'browser-empty'),
      refreshMs: 250,
    });
    const fresh = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    try {
      await fresh.goto(empty.url);
      await fresh.locator('#live', { hasText: /^live/ }).waitFor();
      expect(await fresh.locator('#component-list').textContent()).to.match(/^none answered yet.*postage run MODULE/);
      expect(await fresh.locator('#graph').textContent()).to.equal('nothing to draw until a component answers');
      expect(await fresh.locator('#error-list').textContent()).to.equal('no component reports an error queue');
      expect(await overflowing(fresh)).to.deep.equal([]);
      await screenshot(fresh, 'dashboard-empty.png');
    } finally {
      await fresh.close();
      await empty.close();
    }
  });
});

// The pages `vbank up` serves, loaded in real headless Chromium.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startVbank, withBrowser } from './harness.mjs';

let vbank;
before(async () => { vbank = await startVbank(); });
after(async () => { await vbank?.stop(); });

test('customer page loads over HTTPS, shows the service as available and the dev-mode banner', async () => {
  await withBrowser('customer-page', async (context) => {
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    const resp = await page.goto(vbank.urls.customer);
    assert.equal(resp.status(), 200);
    assert.ok(page.url().startsWith('https://'));
    assert.equal(await page.title(), '视频银行 · Video Banking');
    await page.locator('#service-status[data-state="ready"]').waitFor({ timeout: 15_000 });
    assert.match(await page.locator('#status-text').innerText(), /服务可用/);
    assert.ok(await page.locator('#dev-banner').isVisible(), 'development mode must be visible on every page');
    assert.match(await page.locator('#node').innerText(), /vbank \d+\.\d+\.\d+/);
    const headers = resp.headers();
    assert.match(headers['content-security-policy'], /default-src 'self'/);
    assert.deepEqual(errors, []);
  });
});

test('teller console lists the gateway readiness checks', async () => {
  await withBrowser('teller-console', async (context) => {
    const page = await context.newPage();
    await page.goto(vbank.urls.teller);
    assert.equal(await page.title(), '柜员工作台 · Teller console');
    const row = page.locator('#checks tbody tr', { hasText: 'store' });
    await row.waitFor({ timeout: 15_000 });
    assert.match(await row.innerText(), /store\s+ok/);
  });
});

test('a page that is missing answers 404 in JSON, not a stack trace', async () => {
  await withBrowser('not-found', async (context) => {
    const page = await context.newPage();
    const resp = await page.goto(new URL('/no/such/page', vbank.urls.customer).href);
    assert.equal(resp.status(), 404);
    assert.match(await page.locator('body').innerText(), /no such page: \/no\/such\/page/);
  });
});

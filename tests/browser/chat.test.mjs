// Chat and links between customer and teller: each message reaches both pages in one order (the sequence number of
// the call's event stream), text stays text (no HTML injection), and a bad message gets a clear error on the page.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { openCall, startVbank, withBrowser } from './harness.mjs';

let vbank;
before(async () => { vbank = await startVbank(); });
after(async () => { await vbank?.stop(); });

const entries = (page) => page.$$eval('#chat-log li', (lis) => lis.map((li) => ({
  seq: li.dataset.seq ? Number(li.dataset.seq) : null,
  kind: li.dataset.kind ?? null,
  cls: li.className,
  text: li.textContent,
  html: li.innerHTML,
  href: li.querySelector('a')?.href ?? null,
})));

async function until(page, cond, label) {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const e = await entries(page);
    if (cond(e)) return e;
    assert.ok(Date.now() < deadline, `${label}: ${JSON.stringify(e)}\n${vbank.log.slice(-10).join('\n')}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test('chat and links reach both pages in one order; text stays text; bad messages are refused', async () => {
  await withBrowser('chat', async (context) => {
    const { customer, teller } = await openCall(context, vbank, 'chat-1');
    await customer.locator('#chat').waitFor({ state: 'visible', timeout: 30_000 });
    await teller.locator('#chat').waitFor({ state: 'visible', timeout: 30_000 });

    const hostile = '您好 <img src=x onerror="window.pwned=1">';
    await customer.fill('#chat-text', hostile);
    await customer.click('#chat-form button');
    await teller.evaluate(() => window.vbankCall.send({ kind: 'link', url: 'https://bank.example/form', title: '开户表单' }));

    for (const [page, label] of [[customer, 'customer'], [teller, 'teller']]) {
      const e = await until(page, (x) => x.filter((m) => m.seq).length >= 2, `${label} got both messages`);
      const chat = e.find((m) => m.kind === 'chat');
      const link = e.find((m) => m.kind === 'link');
      assert.ok(chat.text.endsWith(hostile), `${label}: chat shown as text`);
      assert.ok(!chat.html.includes('<img'), `${label}: no markup from a message`);
      assert.equal(link.href, 'https://bank.example/form');
      assert.deepEqual(e.filter((m) => m.seq).map((m) => m.seq).sort(), [1, 2], `${label}: sequence numbers`);
      assert.equal(await page.evaluate(() => window.pwned), undefined);
    }
    const order = async (p) => (await entries(p)).filter((m) => m.seq).map((m) => m.seq);
    assert.deepEqual(await order(customer), await order(teller), 'both pages list the messages in one order');

    await customer.evaluate(() => window.vbankCall.send({ kind: 'link', url: 'javascript:alert(1)' }));
    const e = await until(customer, (x) => x.some((m) => m.cls === 'chat-error'), 'customer sees the refusal');
    assert.match(e.find((m) => m.cls === 'chat-error').text, /https:\/\//);
    assert.equal((await entries(teller)).filter((m) => m.seq).length, 2, 'a refused message reaches nobody');
  });
});

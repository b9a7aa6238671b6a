// A whole corporate account opening (对公开户) on `vbank up`, from the pages a customer and the bank's staff use:
// the customer consents and queues; of two idle tellers only the permitted one rings; the teller shows the account
// agreement (a PDF rendered by the appliance) and annotates it; the customer signs electronically; the teller
// transfers to a specialist, who joins before the teller leaves; the call ends, the customer rates it, and the
// supervisor sees the rating. The customer shares their screen when asked, after consenting. The sealed recording's events hold consent, push, strokes, signature and transfer in
// that order. Bad input on the way: a non-PDF and an oversized upload, a page asked for by someone outside the call,
// a document pushed by the customer, a forged signature, a call token used for another room.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, test } from 'node:test';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { drawSignature, framesDecoded, launch, screenshots, startRecordedVbank, supervisorConsole } from './harness.mjs';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
let vbank;
before(async () => { vbank = await startRecordedVbank(); });
after(async () => { await vbank?.stop(); });

const cli = (args, input) => vbank.cli(args, input);
const until = (what, check, ms) => vbank.until(what, check, ms);
const log = () => vbank.log.slice(-15).join('\n');

/** A teller console in its own browser context (its own session cookie), logged in and available. */
async function tellerConsole(browser, name, password) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, locale: 'zh-CN', viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await page.goto(vbank.urls.teller);
  await page.fill('#login-name', name);
  await page.fill('#login-password', password);
  await page.click('#login-form button[type=submit]');
  await page.locator('#desk-controls').waitFor();
  await page.click('#available');
  await page.locator('#teller-state', { hasText: 'available' }).waitFor();
  return { context, page };
}

const deskLog = (page) => page.evaluate(() => window.deskLog);
const chatErrors = (page) => page.locator('#chat-log .chat-error').allInnerTexts();

async function media(page, other) {
  const state = async (p) => JSON.stringify([await p.locator('#call-state').innerText(), await deskLog(p)]);
  await until('no media both ways', async () => (await framesDecoded(page)) > 20 && (await framesDecoded(other)) > 20, 30_000)
    .catch(async (e) => { throw new Error(`${e.message}\n${await state(page)}\n${await state(other)}`); });
}

/** Draw a stroke on the teller's document canvas, from (x0, y0) to (x1, y1) in page fractions. */
async function draw(page, [x0, y0], [x1, y1]) {
  const box = await page.locator('#doc-ink').boundingBox();
  await page.mouse.move(box.x + box.width * x0, box.y + box.height * y0);
  await page.mouse.down();
  for (let i = 1; i <= 12; i++) {
    await page.mouse.move(box.x + box.width * (x0 + ((x1 - x0) * i) / 12), box.y + box.height * (y0 + ((y1 - y0) * i) / 12));
  }
  await page.mouse.up();
}

test('corporate account opening: consent, routing, document and annotations, e-signature, transfer, rating, recording', async () => {
  cli(['accounts', 'add', 'li', '--business', 'corporate-account'], 'Corporate2026\n');
  cli(['accounts', 'add', 'wang', '--business', 'wealth'], 'Wealth2026pw\n');
  cli(['accounts', 'add', 'sun', '--business', 'corporate-account'], 'Specialist2026\n');
  cli(['accounts', 'add', 'chen', '--role', 'supervisor'], 'Supervise2026\n');
  const { browser } = await launch();
  try {
    // Two idle tellers; only li may open corporate accounts.
    const li = await tellerConsole(browser, 'li', 'Corporate2026');
    const wang = await tellerConsole(browser, 'wang', 'Wealth2026pw');

    // The customer, on a phone: chooses the business, reads and accepts the notice, queues.
    const phone = await browser.newContext({ ignoreHTTPSErrors: true, locale: 'zh-CN', viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    const customer = await phone.newPage();
    await customer.goto(vbank.urls.customer);
    // English only, large text: the choice holds for text the page adds later, and the notice stays as shown.
    await customer.click('#lang-bar [data-lang="en"]');
    await customer.click('#large-text');
    assert.equal(await customer.locator('#queue').innerText(), 'Queue for a teller');
    assert.equal(await customer.evaluate(() => getComputedStyle(document.body).fontSize), '21px');
    await customer.selectOption('#business', 'corporate-account');
    await customer.locator('#consent-text', { hasText: '保存 5 年' }).waitFor();
    await customer.check('#consent-ok');
    await screenshots(phone, 'account-opening-1-consent');
    await customer.click('#queue');

    await li.page.locator('#ring').waitFor({ timeout: 15_000 });
    assert.match(await li.page.locator('#ring-text').innerText(), /corporate-account/);
    assert.ok(!(await deskLog(wang.page)).some((m) => m.type === 'ring'), 'wang is not permitted and never rings');
    await screenshots(li.context, 'account-opening-2-ringing');
    await li.page.keyboard.press('a');
    await media(customer, li.page);
    assert.equal(await customer.locator('#desk-state').innerText(), 'A teller answered');
    // Each teller sees the queues they serve, and only those.
    await li.page.locator('#my-queues', { hasText: 'corporate-account: 0' }).waitFor({ timeout: 10_000 });
    assert.doesNotMatch(await li.page.locator('#my-queues').innerText(), /wealth/);

    // Mute sends silence on the same track (the teller's side stops receiving sound), and unmute brings it back; a
    // phone with one camera says so when asked to switch.
    const energy = () => li.page.evaluate(async () => {
      let e = 0;
      (await window.vbankCall.pc.getStats()).forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'audio') e += r.totalAudioEnergy ?? 0; });
      return e;
    });
    const growth = async () => { const a = await energy(); await new Promise((r) => setTimeout(r, 2500)); return (await energy()) - a; };
    await customer.click('#mute');
    assert.equal(await customer.locator('#mute').getAttribute('aria-pressed'), 'true');
    await new Promise((r) => setTimeout(r, 500));
    const mutedGrowth = await growth();
    await customer.click('#mute');
    const liveGrowth = await growth();
    assert.ok(liveGrowth > 0 && mutedGrowth < liveGrowth / 20, `sound energy muted ${mutedGrowth}, unmuted ${liveGrowth}`);
    await customer.click('#switch-camera');
    await customer.locator('#call-state', { hasText: 'one camera' }).waitFor();
    const room = (await deskLog(li.page)).find((m) => m.type === 'connected').room;

    // The customer's call token is for this room only.
    const elsewhere = await customer.evaluate(async (token) => {
      const ws = new WebSocket(`wss://${location.host}/ws`);
      await new Promise((ok) => { ws.onopen = ok; });
      const reply = new Promise((ok) => { ws.onmessage = (e) => ok(JSON.parse(e.data)); });
      ws.send(JSON.stringify({ type: 'join', room: 'call-0123456789abcdef', role: 'customer', token, sdp: 'v=0' }));
      const r = await reply;
      ws.close();
      return r;
    }, (await deskLog(customer)).find((m) => m.type === 'connected').token);
    assert.equal(elsewhere.type, 'error', JSON.stringify(elsewhere));
    assert.match(elsewhere.message, /new call token/);

    // Uploads that are not documents are refused, and say what to do.
    await li.page.setInputFiles('#doc-file', { name: 'id-card.pdf', mimeType: 'application/pdf', buffer: Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex') });
    await li.page.click('#doc-push');
    await li.page.locator('#desk-state', { hasText: 'not a PDF or PowerPoint file' }).waitFor({ timeout: 10_000 });
    const customerId = (await deskLog(li.page)).find((m) => m.type === 'ring').customer;
    const oversized = await li.page.evaluate(async (c) => {
      const r = await fetch(`/api/documents?customer=${c}&name=big.pdf`, { method: 'POST', body: new Uint8Array(21 << 20) });
      return [r.status, (await r.json()).error];
    }, customerId);
    assert.equal(oversized[0], 413);
    assert.match(oversized[1], /20 MiB/);

    // The account agreement: rendered by the appliance, shown on both sides.
    await li.page.setInputFiles('#doc-file', join(FIXTURES, 'account-agreement.pdf'));
    await li.page.click('#doc-push');
    await li.page.locator('#desk-state', { hasText: '2 页' }).waitFor({ timeout: 30_000 });
    for (const p of [li.page, customer]) {
      await p.locator('#doc-page[data-loaded$="/1"]').waitFor({ timeout: 15_000 });
      assert.equal(await p.locator('#doc-page').evaluate((i) => i.naturalWidth), 1280);
    }
    const docId = (await customer.locator('#doc-page').getAttribute('data-loaded')).split('/')[0];
    await li.page.click('#doc-next');
    await customer.locator('#doc-pageno', { hasText: '2 / 2' }).waitFor();
    await li.page.locator('#doc-pageno', { hasText: '2 / 2' }).waitFor();
    await li.page.keyboard.press('PageUp');
    for (const p of [li.page, customer]) {
      await p.locator('#doc-pageno', { hasText: '1 / 2' }).waitFor();
      await p.locator('#doc-page[data-loaded$="/1"]').waitFor();
    }

    // Only the call's people see its pages.
    const outsider = await wang.page.evaluate(async (id) => (await fetch(`/api/documents/${id}/pages/1`)).status, docId);
    assert.equal(outsider, 403, 'a teller outside the call');
    const anonymous = await customer.evaluate(async (id) => (await fetch(`/api/documents/${id}/pages/1`)).status, docId);
    assert.equal(anonymous, 401, 'no session, no visit');
    const wrongSecret = await customer.evaluate(async ([id, c]) => (await fetch(`/api/documents/${id}/pages/1`, { headers: { 'x-vbank-visit': `${c}:${'0'.repeat(32)}` } })).status, [docId, customerId]);
    assert.equal(wrongSecret, 403, 'a wrong visit secret');

    // The teller annotates: a pen underline and a highlight, drawn on the customer's copy too.
    await draw(li.page, [0.1, 0.2], [0.6, 0.2]);
    await li.page.check('input[name="doc-tool"][value="highlighter"]');
    await draw(li.page, [0.1, 0.3], [0.7, 0.3]);
    await customer.locator('#doc-ink[data-strokes="2"]').waitFor({ timeout: 10_000 });
    const inked = await customer.locator('#doc-ink').evaluate((c) => {
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
      return n;
    });
    assert.ok(inked > 1000, `ink on the customer's page: ${inked} pixels`);
    await screenshots(phone, 'account-opening-3-customer-document');
    await screenshots(li.context, 'account-opening-3-teller-document');

    // Screen sharing, only with consent: the teller asks, the customer allows, and the teller's view of the customer
    // turns into the screen (Chromium's fake capture is the size of the phone's screen, the camera 640×480);
    // stopping brings the camera back. A page that claims to share before anyone asked is refused.
    const sizes = () => li.page.evaluate(() => [...document.querySelectorAll('#remotes video')].map((v) => `${v.videoWidth}x${v.videoHeight}`));
    assert.deepEqual(await sizes(), ['640x480']);
    await customer.evaluate(() => window.deskSend({ type: 'screen', state: 'started' }));
    await customer.locator('#desk-state', { hasText: 'only after you allow it' }).waitFor({ timeout: 10_000 });
    await li.page.click('#screen-request');
    await customer.locator('#screen').waitFor();
    await screenshots(phone, 'account-opening-4-screen-consent');
    await customer.click('#screen-allow');
    await li.page.locator('#desk-state', { hasText: 'is sharing their screen' }).waitFor({ timeout: 10_000 });
    await until('the screen on the teller\'s page', async () => (await sizes())[0] !== '640x480');
    await customer.click('#screen-stop');
    await li.page.locator('#desk-state', { hasText: 'stopped sharing' }).waitFor({ timeout: 10_000 });
    await until('the camera back on the teller\'s page', async () => (await sizes())[0] === '640x480');

    // A link typed in the chat reaches the customer as a link to open; other text stays text.
    await li.page.fill('#chat-text', 'https://bank.example/fees/corporate');
    await li.page.press('#chat-text', 'Enter');
    await customer.locator('#chat-log a[href="https://bank.example/fees/corporate"][rel~="noopener"]').waitFor({ timeout: 10_000 });

    // The customer cannot push documents.
    await customer.evaluate((id) => window.dispatchEvent(new CustomEvent('vbank:send', { detail: { kind: 'document', id, page: 2 } })), docId);
    await until('the customer\'s push refused', async () => (await chatErrors(customer)).some((t) => /only the bank's staff/.test(t)));

    // The e-signature: the teller asks, the customer signs by drawing. A forged signature (a request never made,
    // or a signature sent as a call message) is refused.
    await li.page.fill('#sign-title', '对公账户开户协议 · Account agreement');
    await li.page.fill('#sign-text', '开立对公结算账户；账户名称：示例科技有限公司；币种：人民币');
    await li.page.click('#sign-request');
    await customer.locator('#sign').waitFor();
    await customer.evaluate(() => window.deskSend({ type: 'signature', request: 'req-forged', png: 'iVBORw0KGgo=' }));
    await customer.locator('#desk-state', { hasText: 'no signature was asked for' }).waitFor({ timeout: 10_000 });
    await customer.evaluate(() => window.dispatchEvent(new CustomEvent('vbank:send', { detail: { kind: 'signature', request: 'x' } })));
    await until('the forged call message refused', async () => (await chatErrors(customer)).some((t) => /unknown variant/.test(t)));
    await drawSignature(customer);
    await screenshots(phone, 'account-opening-5-signing');
    await customer.click('#sign-submit');
    await customer.locator('#desk-state', { hasText: 'Signed' }).waitFor({ timeout: 15_000 });
    await li.page.locator('#desk-state', { hasText: 'The customer signed' }).waitFor({ timeout: 15_000 });

    // A warm transfer to the specialist: sun rings, answers and joins while li is still there; then li leaves.
    const sun = await tellerConsole(browser, 'sun', 'Specialist2026');
    await li.page.fill('#transfer-to', 'sun');
    await li.page.click('#transfer');
    await sun.page.locator('#ring-text', { hasText: 'li' }).waitFor({ timeout: 15_000 });
    await sun.page.keyboard.press('a');
    const joined = await until('sun connected', async () => (await deskLog(sun.page)).find((m) => m.type === 'connected'));
    assert.equal(joined.room, room);
    assert.equal(joined.role, 'specialist');
    await media(sun.page, customer);
    await screenshots(sun.context, 'account-opening-6-specialist');

    // The supervisor sees the live call: its tellers in order, and its media quality.
    const { context: sup, page: supPage } = await supervisorConsole(browser, vbank, 'chen', 'Supervise2026');
    await supPage.locator('#calls tbody tr', { hasText: room }).waitFor({ timeout: 10_000 });
    const live = await until('the call\'s quality', async () => {
      const c = (await supPage.evaluate(() => window.overview)).calls.find((x) => x.room === room);
      return c?.quality?.participants >= 3 && c;
    });
    assert.deepEqual(live.tellers, ['li', 'sun']);
    // The supervisor takes wang, idle at the desk, out of the rotation; wang's console shows it.
    await supPage.click('#tellers button[data-teller="wang"]');
    await wang.page.locator('#teller-state', { hasText: 'away' }).waitFor({ timeout: 10_000 });
    assert.match(await supPage.locator('#calls tbody tr', { hasText: room }).innerText(), /RTT \d+ ms/);
    await li.page.click('#hangup');
    await sun.page.selectOption('#outcome', 'completed');
    await sun.page.fill('#outcome-notes', '开户资料齐全，协议已签署');
    await sun.page.click('#hangup');
    await sun.page.locator('#teller-state', { hasText: 'wrap-up' }).waitFor({ timeout: 10_000 });

    // The customer hangs up and rates the call; the supervisor sees the rating.
    await customer.click('#hangup');
    await customer.locator('#rating').waitFor();
    await customer.fill('#rating-comment', '办理很快');
    await customer.click('#rating button[data-stars="4"]');
    await customer.locator('#desk-state', { hasText: 'Thank you' }).waitFor({ timeout: 10_000 });
    await screenshots(phone, 'account-opening-7-rated');
    await supPage.locator('#ratings tbody tr', { hasText: room }).waitFor({ timeout: 10_000 });
    const rating = (await supPage.evaluate(() => window.ratings)).find((r) => r.room === room);
    assert.equal(rating.stars, 4);

    // The sealed recording holds the whole story, in order.
    const rec = await until(`no sealed recording of ${room}`, () => {
      const r = cli(['recordings', 'list', '--call', room, '--viewer', 'auditor-3']).recordings[0];
      return r?.state === 'sealed' && r;
    }, 30_000);
    const { events } = cli(['recordings', 'events', rec.id, '--viewer', 'auditor-3']);
    const kinds = events.map((e) => e.kind);
    const order = ['consent', 'document', 'stroke', 'signature', 'transfer'].map((k) => kinds.indexOf(k));
    assert.ok(order.every((i, n) => i >= 0 && (n === 0 || i > order[n - 1])), `consent, push, strokes, signature, transfer in order: ${JSON.stringify(kinds)}`);
    const shares = events.filter((e) => e.kind === 'screen_share').map((e) => e.state);
    assert.deepEqual(shares, ['allowed', 'started', 'stopped']);
    assert.ok(kinds.indexOf('screen_request') < kinds.indexOf('screen_share'));
    const push = events.find((e) => e.kind === 'document');
    assert.equal(push.sm3, createHash('sm3').update(readFileSync(join(FIXTURES, 'account-agreement.pdf'))).digest('hex'));
    assert.equal(push.role, 'teller');
    assert.deepEqual(events.filter((e) => e.kind === 'stroke').map((e) => e.tool), ['pen', 'highlighter']);
    assert.equal(events.find((e) => e.kind === 'transfer').to, 'sun');
    const outcomes = events.filter((e) => e.kind === 'outcome').map((e) => [e.teller, e.outcome]);
    assert.deepEqual(outcomes.at(-1), ['sun', 'completed'], JSON.stringify(outcomes));

    // The supervisor finds the recording, reads its events and plays it with a reason; all of it is in the audit log
    // under the supervisor's name, which the audit view shows.
    await supPage.fill('#rec-call', room);
    await supPage.click('#rec-form button[type=submit]');
    await supPage.locator('#recordings tbody tr', { hasText: room }).waitFor({ timeout: 10_000 });
    await supPage.click(`#recordings button[data-id="${rec.id}"]`);
    await supPage.locator('#rec-events li', { hasText: 'signature' }).waitFor({ timeout: 10_000 });
    await supPage.fill('#rec-reason', '开户质检 · account-opening QA');
    await supPage.click('#play-form button[type=submit]');
    await until('the recording plays in the supervisor console', () => supPage.evaluate(() => {
      const v = document.getElementById('rec-video');
      return v.readyState >= 2 && v.videoWidth > 0 && !v.error;
    }), 60_000);
    await screenshots(sup, 'account-opening-8-supervisor');
    await supPage.click('#audit-load');
    await supPage.locator('#audit tbody tr').first().waitFor();
    const audit = await supPage.evaluate(() => window.auditEntries);
    for (const action of ['recording.search', 'recording.events', 'recording.export', 'dek.open', 'audit.read']) {
      assert.ok(audit.some((a) => a.action === action && /chen/.test(a.actor)), `${action} by chen in ${JSON.stringify(audit.slice(0, 12))}`);
    }
    // Not for tellers.
    assert.equal(await sun.page.evaluate(async () => (await fetch('/api/supervisor/recordings')).status), 403);
  } finally {
    await browser.close();
  }
});

test('a customer who closes the tab mid-call: the call ends cleanly and its recording is sealed', async () => {
  cli(['accounts', 'add', 'zhao', '--business', 'corporate-account'], 'Corporate2027\n');
  const { browser } = await launch();
  try {
    const li = await tellerConsole(browser, 'zhao', 'Corporate2027');
    const phone = await browser.newContext({ ignoreHTTPSErrors: true, locale: 'zh-CN', viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    const customer = await phone.newPage();
    await customer.goto(vbank.urls.customer);
    await customer.selectOption('#business', 'corporate-account');
    await customer.check('#consent-ok');
    await customer.click('#queue');
    await li.page.locator('#ring').waitFor({ timeout: 15_000 });
    await li.page.keyboard.press('a');
    await media(customer, li.page);
    const room = (await deskLog(li.page)).find((m) => m.type === 'connected').room;
    await customer.close();
    // The page does not come back within the grace period (15 s): the desk ends the visit, the teller wraps up.
    await li.page.locator('#teller-state', { hasText: 'wrap-up' }).waitFor({ timeout: 40_000 });
    await li.page.locator('#desk-state', { hasText: 'The customer left' }).waitFor();
    await li.page.locator('#call-state', { hasText: 'Call ended' }).waitFor();
    const rec = await until(`no sealed recording of ${room}`, () => {
      const r = cli(['recordings', 'list', '--call', room, '--viewer', 'auditor-3']).recordings[0];
      return r?.state === 'sealed' && r;
    }, 30_000);
    const { events } = cli(['recordings', 'events', rec.id, '--viewer', 'auditor-3']);
    assert.ok(events.some((e) => e.kind === 'left' && e.role === 'customer'), JSON.stringify(events));
    assert.equal(events.find((e) => e.kind === 'ended')?.why, 'the customer\'s page closed', `${JSON.stringify(events.map((e) => e.kind))}\n${JSON.stringify(cli(['recordings', 'list', '--call', room, '--viewer', 'auditor-3']))}\n${vbank.log.filter((l) => /recorder|recording|WARN|ERROR/.test(l) && !/GET \/api\/status|POST \/v1\/recordings\/[^ ]+\/events/.test(l)).slice(-40).join('\n')}`);
    const shown = cli(['recordings', 'show', rec.id, '--viewer', 'auditor-3']);
    assert.equal(shown.verifies, true, JSON.stringify(shown));
  } finally {
    await browser.close();
  }
});

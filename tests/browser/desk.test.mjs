// The front desk end to end on `vbank up`, from real browser pages (each teller in their own browser context, so
// their own session cookie): operators create teller accounts with `vbank accounts`; tellers log in and go
// available; a customer queues for corporate account opening; only the permitted teller rings; a second answer
// loses; the answer connects both sides to one call room; five wrong passwords lock an account.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, test } from 'node:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VBANK, ceremony, drawSignature, framesDecoded, launch, screenshots, startVbank } from './harness.mjs';

let vbank;
before(async () => { vbank = await startVbank(); });
after(async () => { await vbank?.stop(); });

const cli = (args, input) => JSON.parse(execFileSync(VBANK, ['--config', vbank.urls.config, '--json', ...args], { encoding: 'utf8', input, stdio: 'pipe' }));

/** A page on the appliance in `context`, running `setup(arg)` there (it opens a WebSocket that collects messages in
 * `window.desk`). */
async function deskPage(context, setup, arg) {
  const page = await context.newPage();
  await page.goto(vbank.urls.customer);
  const result = await page.evaluate(setup, arg);
  return { page, result };
}

const messages = (page) => page.evaluate(() => window.desk.messages);
async function waitFor(page, pred, what, ms = 15_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const m = await messages(page);
    const found = m.find(pred);
    if (found) return found;
    assert.ok(Date.now() < deadline, `${what}: got ${JSON.stringify(m)}\n${vbank.log.slice(-10).join('\n')}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function tellerConsole(browser, name, password) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const { page, result } = await deskPage(context, async ([n, p]) => {
    const r = await fetch('/api/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: n, password: p }) });
    if (!r.ok) return { status: r.status, body: await r.json() };
    window.desk = { messages: [] };
    const ws = new WebSocket(`wss://${location.host}/api/teller/ws`);
    window.desk.ws = ws;
    ws.onmessage = (e) => window.desk.messages.push(JSON.parse(e.data));
    await new Promise((ok) => { ws.onopen = ok; });
    ws.send(JSON.stringify({ type: 'state', state: 'available' }));
    return { status: r.status, body: await r.json() };
  }, [name, password]);
  return { context, page, login: result };
}

test('a customer rings only the permitted teller, one answer wins, and both join one call', async () => {
  cli(['accounts', 'add', 'wang', '--business', 'wealth'], 'Wealth2026pw\n');
  cli(['accounts', 'add', 'li', '--business', 'corporate-account,wealth'], 'Corporate2026\n');
  const list = cli(['accounts', 'list']).accounts.map((a) => a.name).sort();
  assert.deepEqual(list, ['li', 'wang']);
  assert.throws(() => cli(['accounts', 'add', 'zhao', '--business', 'wealth'], 'short\n'), /at least 10 characters/);

  const { browser } = await launch();
  try {
    const wang = await tellerConsole(browser, 'wang', 'Wealth2026pw');
    const li = await tellerConsole(browser, 'li', 'Corporate2026');
    assert.equal(li.login.status, 200, JSON.stringify(li.login));
    assert.deepEqual(li.login.body.businesses, ['corporate-account', 'wealth']);
    await waitFor(li.page, (m) => m.type === 'state' && m.state === 'available', 'li available');

    const customerContext = await browser.newContext({ ignoreHTTPSErrors: true });
    const { page: customer, result: queued } = await deskPage(customerContext, async () => {
      const post = (body) => fetch('/api/queue', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      // Without the privacy notice accepted, or with the hash of another text, queueing is refused.
      const refusedWithout = (await post({ business: 'corporate-account' })).status;
      const refusedStale = (await post({ business: 'corporate-account', consent: { version: '2026-11', sm3: '00'.repeat(32) } })).status;
      const notice = await (await fetch('/api/consent?business=corporate-account')).json();
      const r = await post({ business: 'corporate-account', consent: { version: notice.version, sm3: notice.sm3 } });
      const body = { ...(await r.json()), refusedWithout, refusedStale, notice };
      window.desk = { messages: [] };
      const ws = new WebSocket(`wss://${location.host}/api/queue/ws?customer=${body.customer}&secret=${body.secret}`);
      window.desk.ws = ws;
      ws.onmessage = (e) => window.desk.messages.push(JSON.parse(e.data));
      await new Promise((ok) => { ws.onopen = ok; });
      return body;
    });
    assert.match(queued.customer, /^cust-/);
    assert.equal(queued.refusedWithout, 400);
    assert.equal(queued.refusedStale, 409);
    assert.match(queued.notice.text, /保存 5 年/);
    await waitFor(customer, (m) => m.type === 'position' && m.position === 1, 'the customer is first in line');
    const ring = await waitFor(li.page, (m) => m.type === 'ring', 'li rings');
    assert.equal(ring.customer, queued.customer);
    assert.equal(ring.business, 'corporate-account');
    await new Promise((r) => setTimeout(r, 500));
    assert.ok(!(await messages(wang.page)).some((m) => m.type === 'ring'), 'wang is not permitted and never rings');

    // Both answer at once: only li, who is being rung, gets the call.
    await Promise.all([
      wang.page.evaluate((c) => window.desk.ws.send(JSON.stringify({ type: 'answer', customer: c })), queued.customer),
      li.page.evaluate((c) => window.desk.ws.send(JSON.stringify({ type: 'answer', customer: c })), queued.customer),
    ]);
    const tellerSide = await waitFor(li.page, (m) => m.type === 'connected', 'li connected');
    const customerSide = await waitFor(customer, (m) => m.type === 'connected', 'the customer connected');
    assert.equal(tellerSide.room, customerSide.room);
    assert.match(tellerSide.room, /^call-[0-9a-f]{16}$/);
    assert.equal(tellerSide.role, 'teller');
    assert.equal(customerSide.role, 'customer');
    const refused = await waitFor(wang.page, (m) => m.type === 'error', 'wang told no');
    assert.match(refused.message, /no longer ringing for you/);

    // A transfer to a teller without the permission is refused, and says why.
    await li.page.evaluate((c) => window.desk.ws.send(JSON.stringify({ type: 'transfer', customer: c, to: 'wang' })), queued.customer);
    const noTransfer = await waitFor(li.page, (m) => m.type === 'error', 'the transfer refused');
    assert.match(noTransfer.message, /not permitted for corporate-account/);

    // The supervisor console shows li busy in the call.
    cli(['accounts', 'add', 'chen', '--role', 'supervisor'], 'Supervise2026\n');
    const supContext = await browser.newContext({ ignoreHTTPSErrors: true });
    const sup = await supContext.newPage();
    await sup.goto(`${vbank.urls.customer}supervisor`);
    await sup.fill('#login-name', 'chen');
    await sup.fill('#login-password', 'Supervise2026');
    await sup.click('#login-form button[type=submit]');
    await sup.locator('#calls tbody tr').first().waitFor({ timeout: 10_000 });
    const overview = await sup.evaluate(() => window.overview);
    assert.equal(overview.tellers.find((t) => t.name === 'li').state, 'busy', JSON.stringify(overview));
    assert.deepEqual(overview.calls[0].tellers, ['li']);
    assert.equal(overview.calls[0].business, 'corporate-account');
    await screenshots(supContext, 'desk-supervisor');
    // A teller's session is not a supervisor's.
    assert.equal(await li.page.evaluate(async () => (await fetch('/api/supervisor/overview')).status), 403);

    // The customer closes the tab: after the grace period for a page to come back (15 s), the call ends.
    await customer.evaluate(() => window.desk.ws.close());
    await waitFor(li.page, (m) => m.type === 'state' && m.state === 'wrap-up', 'li wraps up', 30_000);
    await screenshots(li.context, 'desk-teller');
  } finally {
    await browser.close();
  }

  // Five wrong passwords lock the account; the answer says so and what to do.
  const { browser: b2, context } = await launch();
  try {
    const page = await context.newPage();
    await page.goto(vbank.urls.customer);
    const answers = await page.evaluate(async () => {
      const out = [];
      for (let i = 0; i < 6; i++) {
        const r = await fetch('/api/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'wang', password: 'wrong-guess-1' }) });
        out.push([r.status, (await r.json()).error]);
      }
      return out;
    });
    assert.equal(answers[0][0], 401);
    assert.match(answers[0][1], /wrong name or password/);
    assert.match(answers[5][1], /locked/);
    const accounts = cli(['accounts', 'list']).accounts;
    assert.ok(accounts.find((a) => a.name === 'wang').locked_until > 0);
    cli(['accounts', 'set', 'wang', '--unlock']);
  } finally {
    await b2.close();
  }
});

test('by hand: the customer queues from the page, the teller logs in, answers with the keyboard, and they talk', async () => {
  // Recorded from here on: the call's events must start with the customer's consent.
  const officers = mkdtempSync(join(tmpdir(), 'vbank-officers-'));
  await ceremony(vbank, officers);
  rmSync(officers, { recursive: true, force: true });
  cli(['accounts', 'add', 'zhou', '--business', 'loan-signing'], 'LoanDesk2026\n');
  const { browser } = await launch();
  const tellerContext = await browser.newContext({ ignoreHTTPSErrors: true });
  const customerContext = await browser.newContext({ ignoreHTTPSErrors: true, locale: 'zh-CN' });
  try {
    const teller = await tellerContext.newPage();
    await teller.goto(vbank.urls.teller);
    await teller.fill('#login-name', 'zhou');
    await teller.fill('#login-password', 'LoanDesk2026');
    await teller.click('#login-form button[type=submit]');
    await teller.locator('#desk-controls').waitFor();
    await teller.click('#available');
    await teller.locator('#teller-state', { hasText: 'available' }).waitFor();

    const customer = await customerContext.newPage();
    await customer.goto(vbank.urls.customer);
    await customer.selectOption('#business', 'loan-signing');
    await customer.locator('#consent-text', { hasText: '10 years' }).waitFor();
    assert.ok(await customer.locator('#queue').isDisabled(), 'no queueing before the notice is accepted');
    await customer.check('#consent-ok');
    await customer.click('#queue');
    await teller.locator('#ring').waitFor({ timeout: 15_000 });
    assert.match(await teller.locator('#ring-text').innerText(), /loan-signing/);
    await screenshots(tellerContext, 'desk-ringing');
    await teller.keyboard.press('a');

    const deadline = Date.now() + 30_000;
    while ((await framesDecoded(customer)) < 30 || (await framesDecoded(teller)) < 30) {
      assert.ok(Date.now() < deadline, `no media both ways\n${vbank.log.slice(-20).join('\n')}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    const room = (await teller.evaluate(() => window.deskLog.find((m) => m.type === 'connected'))).room;
    assert.equal(await customer.locator('#room').inputValue(), room, 'both joined the desk\'s room');
    await screenshots(customerContext, 'desk-customer-in-call');
    // The teller asks the customer to sign the account agreement; the customer signs by drawing.
    await teller.fill('#sign-title', '对公账户开户协议 · Account agreement');
    await teller.fill('#sign-text', '开立对公结算账户；账户名称：示例科技有限公司；币种：人民币');
    await teller.click('#sign-request');
    await customer.locator('#sign').waitFor();
    await drawSignature(customer);
    await customer.click('#sign-submit');
    await customer.locator('#desk-state', { hasText: 'Signed' }).waitFor({ timeout: 15_000 }).catch(async (e) => {
      throw new Error(`${e.message}\ncustomer desk: ${await customer.locator("#desk-state").innerText()} ${JSON.stringify(await customer.evaluate(() => window.deskLog))}`);
    });
    await teller.locator('#desk-state', { hasText: 'The customer signed' }).waitFor({ timeout: 15_000 });
    await screenshots(customerContext, 'desk-customer-signed');
    await teller.selectOption('#outcome', 'completed');
    await teller.fill('#outcome-notes', '合同已签署 · agreement signed');
    await teller.click('#hangup');
    await teller.locator('#teller-state', { hasText: 'wrap-up' }).waitFor({ timeout: 10_000 });
    await customer.click('#hangup');
    // The customer rates the call once; a second rating is refused.
    await customer.locator('#rating').waitFor();
    await customer.click('#rating button[data-stars="5"]');
    await customer.locator('#desk-state', { hasText: 'Thank you' }).waitFor({ timeout: 10_000 });

    // The call's recording is sealed when the last one leaves; its events begin with the consent shown.
    const deadline2 = Date.now() + 30_000;
    let rec;
    for (;;) {
      rec = cli(['recordings', 'list', '--call', room, '--viewer', 'auditor-2']).recordings[0];
      if (rec?.state === 'sealed') break;
      assert.ok(Date.now() < deadline2, `no sealed recording of ${room}: ${JSON.stringify(rec)}`);
      await new Promise((r) => setTimeout(r, 1000));
    }
    const { events } = cli(['recordings', 'events', rec.id, '--viewer', 'auditor-2']);
    const kinds = events.map((e) => e.kind);
    assert.equal(kinds[0], 'consent', JSON.stringify(events));
    const notice = await customer.evaluate(async () => (await fetch('/api/consent?business=loan-signing')).json());
    assert.equal(events[0].sm3, notice.sm3, 'the hash of the text the customer was shown');
    assert.ok(kinds.includes('joined') && kinds.includes('left') && kinds.includes('track'), JSON.stringify(kinds));
    // The signing is in the recording: the request, then the statement with keyd's SM2 seal, which OpenSSL checks.
    const signature = events.find((e) => e.kind === 'signature');
    assert.ok(kinds.indexOf('sign_request') < kinds.indexOf('signature'), JSON.stringify(kinds));
    const statement = JSON.parse(signature.statement);
    assert.equal(statement.document_sm3, events.find((e) => e.kind === 'sign_request').document_sm3);
    assert.match(signature.image_png, /^iVBORw0KGgo/);
    const dir = mkdtempSync(join(tmpdir(), 'vbank-esign-'));
    try {
      writeFileSync(join(dir, 'statement'), signature.statement);
      writeFileSync(join(dir, 'seal.der'), Buffer.from(signature.seal, 'hex'));
      execFileSync(VBANK, ['--config', vbank.urls.config, 'hsm', 'keys', 'export-public', signature.seal_key, '--out', join(dir, 'seal.pem')], { stdio: 'pipe' });
      execFileSync('openssl', ['pkeyutl', '-verify', '-rawin', '-digest', 'sm3', '-pkeyopt', 'distid:vbank-evidence', '-pubin',
        '-inkey', join(dir, 'seal.pem'), '-sigfile', join(dir, 'seal.der'), '-in', join(dir, 'statement')], { stdio: 'pipe' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const outcome = events.find((e) => e.kind === 'outcome');
    assert.equal(outcome?.outcome, 'completed', JSON.stringify(events));
    assert.equal(outcome.teller, 'zhou');
    assert.ok(kinds.indexOf('outcome') < kinds.lastIndexOf('left'), `the outcome is recorded before the call closes: ${JSON.stringify(kinds)}`);
  } finally {
    await browser.close();
  }
});

test('a gateway restart: the waiting customer keeps their place, the teller stays logged in, and the call rings', async () => {
  cli(['accounts', 'add', 'wu', '--business', 'wealth'], 'WealthDesk2026\n');
  const { browser, context } = await launch();
  try {
    // A teller console, logged in but away: the customer below waits.
    const tellerContext = await browser.newContext({ ignoreHTTPSErrors: true });
    const teller = await tellerContext.newPage();
    await teller.goto(vbank.urls.teller);
    await teller.fill('#login-name', 'wu');
    await teller.fill('#login-password', 'WealthDesk2026');
    await teller.click('#login-form button[type=submit]');
    await teller.locator('#teller-state', { hasText: 'away' }).waitFor();
    const page = await context.newPage();
    await page.goto(vbank.urls.customer);
    // Nobody takes wealth calls now (the tellers' consoles are closed): the customer waits.
    const visit = await page.evaluate(async () => {
      const notice = await (await fetch('/api/consent?business=wealth')).json();
      const r = await fetch('/api/queue', { method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ business: 'wealth', consent: { version: notice.version, sm3: notice.sm3 } }) });
      return r.json();
    });
    const listen = (v) => page.evaluate((v) => new Promise((ok, fail) => {
      const ws = new WebSocket(`wss://${location.host}/api/queue/ws?customer=${v.customer}&secret=${v.secret}`);
      ws.onmessage = (e) => { const m = JSON.parse(e.data); if (m.type === 'position') ok(m); };
      ws.onerror = () => fail(new Error('no socket'));
      setTimeout(() => fail(new Error('no position in 10 s')), 10_000);
    }), v);
    assert.equal((await listen(visit)).position, 1);

    // The gateway dies (kill -9); `vbank up` starts it again.
    execFileSync('pkill', ['-9', '-f', `vbank gateway --config ${vbank.urls.config}`]);
    const deadline = Date.now() + 60_000;
    for (;;) {
      const up = await page.evaluate(async () => { try { return (await fetch('/api/status')).ok; } catch { return false; } });
      if (up) break;
      assert.ok(Date.now() < deadline, `the gateway did not come back\n${vbank.log.slice(-10).join('\n')}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    // Same id and secret: the place is still theirs. A wrong secret is refused.
    assert.equal((await listen(visit)).position, 1);
    await assert.rejects(listen({ ...visit, secret: '0'.repeat(32) }));
    // The console's socket came back by itself with the same session (kept in the store): no new login. Going
    // available rings the waiting customer.
    await teller.click('#available');
    await teller.locator('#teller-state', { hasText: 'available' }).waitFor({ timeout: 20_000 });
    await teller.locator('#ring', { hasText: 'wealth' }).waitFor({ timeout: 15_000 });
    assert.ok(await teller.locator('#login-form').isHidden(), 'still logged in');
  } finally {
    await browser.close();
  }
});

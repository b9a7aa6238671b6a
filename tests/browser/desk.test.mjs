// The front desk end to end on `vbank up`, from real browser pages (each teller in their own browser context, so
// their own session cookie): operators create teller accounts with `vbank accounts`; tellers log in and go
// available; a customer queues for corporate account opening; only the permitted teller rings; a second answer
// loses; the answer connects both sides to one call room; five wrong passwords lock an account.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, test } from 'node:test';
import { VBANK, launch, screenshots, startVbank } from './harness.mjs';

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
async function waitFor(page, pred, what) {
  const deadline = Date.now() + 15_000;
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
      const r = await fetch('/api/queue', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ business: 'corporate-account' }) });
      const body = await r.json();
      window.desk = { messages: [] };
      const ws = new WebSocket(`wss://${location.host}/api/queue/ws?customer=${body.customer}&secret=${body.secret}`);
      window.desk.ws = ws;
      ws.onmessage = (e) => window.desk.messages.push(JSON.parse(e.data));
      await new Promise((ok) => { ws.onopen = ok; });
      return body;
    });
    assert.match(queued.customer, /^cust-/);
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

    // The customer closes the tab: the call ends and li wraps up.
    await customer.evaluate(() => window.desk.ws.close());
    await waitFor(li.page, (m) => m.type === 'state' && m.state === 'wrap-up', 'li wraps up');
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

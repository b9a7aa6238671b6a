// The customer's media path is cut (a UDP relay drops everything): for 2 s ICE recovers by itself; for 15 s the pages
// restart ICE in the same session; when signalling is lost the page rejoins the same room; when the gateway goes
// silent without closing anything (as a node that dies does) the page notices and rejoins. Each time video must flow
// both ways again.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, test } from 'node:test';
import { openCall, startVbank, withBrowser } from './harness.mjs';

let vbank;
before(async () => { vbank = await startVbank({ relay: true }); });
after(async () => { await vbank?.stop(); });

const decoded = (page) => page.evaluate(async () => {
  const call = window.vbankCall;
  if (!call || call.pc.connectionState === 'closed') return 0;
  let n = 0;
  (await call.pc.getStats()).forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video') n += r.framesDecoded ?? 0; });
  return n;
});

async function flowing(page, label, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let first = await decoded(page);
  for (;;) {
    await new Promise((r) => setTimeout(r, 1000));
    const now = await decoded(page);
    if (now > first && now >= 10) return;
    if (now < first) first = now; // a new peer connection after a rejoin starts from zero
    assert.ok(Date.now() < deadline, `${label}: video not flowing (${now} frames)\n${vbank.log.slice(-15).join('\n')}`);
  }
}

test('a 2 s cut of the media path: the call recovers and media flows both ways again', async () => {
  await withBrowser('reconnect', async (context) => {
    const { customer, teller } = await openCall(context, vbank, 'rc-1');
    await flowing(customer, 'customer before the cut', 30_000);
    await flowing(teller, 'teller before the cut', 30_000);

    vbank.relay.cut(2_000);
    await new Promise((r) => setTimeout(r, 2_500));

    await flowing(customer, 'customer after the cut', 30_000);
    await flowing(teller, 'teller after the cut', 30_000);
    assert.match(await customer.locator('#call-state').innerText(), /通话中/);
  });
});

const count = (p, what) => p.evaluate((w) => (w === 'restarts' ? window.vbankCall?.restarts ?? 0
  : Number(document.getElementById('call').dataset.rejoins ?? 0)), what);

test('a 15 s cut while signalling stays up: the pages restart ICE in the same session, without rejoining', async () => {
  await withBrowser('ice-restart', async (context) => {
    const { customer, teller } = await openCall(context, vbank, 'rc-2');
    await flowing(customer, 'customer before the cut', 30_000);

    vbank.relay.cut(15_000);
    await new Promise((r) => setTimeout(r, 15_500));

    await flowing(customer, 'customer after the cut', 45_000);
    await flowing(teller, 'teller after the cut', 45_000);
    const restarts = (await count(customer, 'restarts')) + (await count(teller, 'restarts'));
    const rejoins = (await count(customer, 'rejoins')) + (await count(teller, 'rejoins'));
    assert.ok(restarts >= 1, `at least one page restarted ICE (restarts ${restarts}, rejoins ${rejoins})`);
    assert.equal(rejoins, 0, 'nobody had to rejoin: the sessions survived');
  });
});

test('signalling lost (the socket closes): the page rejoins the same room and media flows again', async () => {
  await withBrowser('rejoin', async (context) => {
    const { customer, teller } = await openCall(context, vbank, 'rc-3');
    await flowing(customer, 'customer before', 30_000);

    await customer.evaluate(() => window.vbankCall.ws.close());

    await flowing(customer, 'customer after rejoining', 45_000);
    await flowing(teller, 'teller after the customer rejoined', 45_000);
    assert.ok((await count(customer, 'rejoins')) >= 1, 'the customer page rejoined the room');
  });
});

test('the gateway goes silent, closing nothing (frozen, as a dead node is): the pages notice and rejoin', async () => {
  await withBrowser('gateway-silent', async (context) => {
    const { customer, teller } = await openCall(context, vbank, 'rc-4');
    await flowing(customer, 'customer before', 30_000);
    await flowing(teller, 'teller before', 30_000);
    const pid = Number(execFileSync('pgrep', ['-f', `gateway --config ${vbank.urls.config}`], { encoding: 'utf8' })
      .trim().split('\n')[0]);
    process.kill(pid, 'SIGSTOP');
    let rejoined;
    try {
      await new Promise((r) => setTimeout(r, 3_000));
      rejoined = [await count(customer, 'rejoins'), await count(teller, 'rejoins')];
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    assert.ok(rejoined.every((n) => n >= 1), `both pages rejoined while the gateway was frozen (${rejoined})`);
    await flowing(customer, 'customer after rejoining', 45_000);
    await flowing(teller, 'teller after rejoining', 45_000);
  });
});

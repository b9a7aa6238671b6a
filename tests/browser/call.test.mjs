// A customer and a teller in one call through the gateway's SFU, in real headless Chromium with fake camera and
// microphone: each must decode the other's video and receive the other's audio.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { openCall, screenshots, startVbank, withBrowser } from './harness.mjs';

let vbank;
before(async () => { vbank = await startVbank(); });
after(async () => { await vbank?.stop(); });

async function inbound(page) {
  return page.evaluate(async () => {
    const call = window.vbankCall;
    if (!call) return { video: 0, audio: 0 };
    let video = 0;
    let audio = 0;
    (await call.pc.getStats()).forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'video') video += r.framesDecoded ?? 0;
      if (r.type === 'inbound-rtp' && r.kind === 'audio') audio += r.totalSamplesReceived ?? 0;
    });
    return { video, audio };
  });
}

test('customer and teller see and hear each other through the SFU', async () => {
  await withBrowser('call', async (context) => {
    const { customer, teller } = await openCall(context, vbank, 'call-1');
    const deadline = Date.now() + 30_000;
    let c;
    let t;
    for (;;) {
      [c, t] = [await inbound(customer), await inbound(teller)];
      if (c.video > 15 && t.video > 15 && c.audio > 0 && t.audio > 0) break;
      assert.ok(Date.now() < deadline, `no media both ways after 30 s: customer ${JSON.stringify(c)}, teller ${JSON.stringify(t)}\n${vbank.log.slice(-20).join('\n')}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    assert.equal(await customer.locator('#remotes video').count(), 1);
    assert.match(await customer.locator('#call-state').innerText(), /通话中/);
    // A specialist is conferenced in: everyone sees everyone.
    const specialist = await context.newPage();
    await specialist.goto(`${vbank.urls.teller}?room=call-1&role=specialist`);
    await specialist.click('#join');
    await customer.locator('#remotes video').nth(1).waitFor({ timeout: 20_000 });
    await specialist.locator('#remotes video').nth(1).waitFor({ timeout: 20_000 });
    const start = (await inbound(specialist)).video;
    const deadline2 = Date.now() + 20_000;
    while ((await inbound(specialist)).video < start + 30) {
      assert.ok(Date.now() < deadline2, 'the specialist decodes both other participants');
      await new Promise((r) => setTimeout(r, 500));
    }
    assert.equal(await customer.locator('#remotes video').count(), 2);
    await specialist.click('#hangup');
    await customer.locator('#remotes video').nth(1).waitFor({ state: 'detached', timeout: 15_000 });
    await screenshots(context, 'call-in-progress');
    // Operators see the call on the gateway's /metrics (updated every second by the media loop).
    await new Promise((r) => setTimeout(r, 1500));
    const metrics = await (await context.request.get(`${vbank.urls.admin.gateway}/metrics`)).text();
    const counter = (name) => Number(new RegExp(`^vbank_${name}(?:_total)? (\\d+)`, 'm').exec(metrics)?.[1] ?? -1);
    assert.ok(counter('media_frames_forwarded') > 0, metrics);
    assert.equal(counter('media_participants'), 2, metrics);
    assert.equal(counter('media_rooms'), 1, metrics);
    // The teller hangs up: the gateway renegotiates the teller's tracks away and the customer's page drops them.
    await teller.click('#hangup');
    await customer.locator('#remotes video').waitFor({ state: 'detached', timeout: 15_000 });
  });
});

test('a call that is not end-to-end encrypted: pages with and without RTCRtpScriptTransform pass frames in clear', async () => {
  await withBrowser('call-clear-streams', async (context) => {
    // The teller's browser has only insertable streams (an older Chromium): its frames still go through the worker,
    // which passes them in clear once the answer says the call is not encrypted; its receivers pipe straight through.
    const customer = await context.newPage();
    const teller = await context.newPage();
    await teller.addInitScript(() => { delete window.RTCRtpScriptTransform; });
    await customer.goto(`${vbank.urls.customer}?room=call-clear`);
    await teller.goto(`${vbank.urls.teller}?room=call-clear`);
    await customer.click('#join');
    await teller.click('#join');
    const deadline = Date.now() + 30_000;
    let c;
    let t;
    for (;;) {
      [c, t] = [await inbound(customer), await inbound(teller)];
      if (c.video > 15 && t.video > 15) break;
      assert.ok(Date.now() < deadline, `no video both ways: customer ${JSON.stringify(c)}, teller ${JSON.stringify(t)}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    assert.equal(await teller.evaluate(() => window.vbankCall.e2ee.mode), 'insertable-streams');
    assert.equal(await customer.evaluate(() => window.vbankCall.e2ee.suite), null, 'not end-to-end encrypted');
  });
});

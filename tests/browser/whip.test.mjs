// WHIP publish and WHEP play against the gateway, driven from plain page JavaScript (no vbank page code): the
// standard endpoints answer 201 with Location and SDP, the player decodes the publisher's frames, DELETE leaves.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startVbank, withBrowser } from './harness.mjs';

let vbank;
before(async () => { vbank = await startVbank(); });
after(async () => { await vbank?.stop(); });

test('WHIP publish, WHEP play, DELETE leaves', async () => {
  await withBrowser('whip-whep', async (context) => {
    const publisher = await context.newPage();
    const player = await context.newPage();
    await publisher.goto(vbank.urls.customer);
    await player.goto(vbank.urls.customer);

    const published = await publisher.evaluate(async () => {
      const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
      const pc = new RTCPeerConnection();
      media.getTracks().forEach((t) => pc.addTransceiver(t, { direction: 'sendonly' }));
      await pc.setLocalDescription(await pc.createOffer());
      const r = await fetch('/whip/live-1', { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
      const answer = await r.text();
      if (r.status === 201) await pc.setRemoteDescription({ type: 'answer', sdp: answer });
      window.whip = { pc, location: r.headers.get('Location') };
      return { status: r.status, location: r.headers.get('Location'), type: r.headers.get('Content-Type') };
    });
    assert.equal(published.status, 201);
    assert.match(published.location, /^\/whip\/live-1\/\d+$/);
    assert.equal(published.type, 'application/sdp');

    const played = await player.evaluate(async () => {
      const pc = new RTCPeerConnection();
      pc.addTransceiver('video', { direction: 'recvonly' });
      pc.addTransceiver('audio', { direction: 'recvonly' });
      await pc.setLocalDescription(await pc.createOffer());
      const r = await fetch('/whep/live-1', { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
      if (r.status === 201) await pc.setRemoteDescription({ type: 'answer', sdp: await r.text() });
      window.whep = { pc, location: r.headers.get('Location') };
      return r.status;
    });
    assert.equal(played, 201);

    const deadline = Date.now() + 30_000;
    let frames = 0;
    while (frames < 15) {
      frames = await player.evaluate(async () => {
        let n = 0;
        (await window.whep.pc.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') n += s.framesDecoded ?? 0; });
        return n;
      });
      assert.ok(Date.now() < deadline, `WHEP player decoded ${frames} frames in 30 s\n${vbank.log.slice(-15).join('\n')}`);
      await new Promise((r) => setTimeout(r, 500));
    }

    const refused = await player.evaluate(async () => (await fetch('/whep/live-1', { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: 'x' })).status);
    assert.equal(refused, 415);
    const left = await publisher.evaluate(async () => (await fetch(window.whip.location, { method: 'DELETE' })).status);
    assert.equal(left, 200);
  });
});

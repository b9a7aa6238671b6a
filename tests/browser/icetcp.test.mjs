// A network that blocks UDP (the relay drops every datagram for the whole test): the browsers must reach the
// gateway's passive ICE-TCP candidate on the media port instead, and video must flow both ways over TCP.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { openCall, startVbank, withBrowser } from './harness.mjs';

let vbank;
before(async () => {
  vbank = await startVbank({ relay: true, tcp: true });
  vbank.relay.cut(10 * 60_000);
});
after(async () => { await vbank?.stop(); });

const media = (page) => page.evaluate(async () => {
  const call = window.vbankCall;
  if (!call) return { frames: 0, protocol: null };
  const stats = await call.pc.getStats();
  let frames = 0;
  let pair = null;
  stats.forEach((r) => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') frames += r.framesDecoded ?? 0;
    if (r.type === 'transport' && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId);
  });
  const local = pair ? stats.get(pair.localCandidateId) : null;
  return { frames, protocol: local?.protocol ?? null };
});

test('with UDP blocked, the call connects over ICE-TCP and video flows both ways', async () => {
  await withBrowser('icetcp', async (context) => {
    const { customer, teller } = await openCall(context, vbank, 'tcp-1');
    for (const [page, label] of [[customer, 'customer'], [teller, 'teller']]) {
      const deadline = Date.now() + 45_000;
      let m = await media(page);
      while (m.frames < 30) {
        assert.ok(Date.now() < deadline,
          `${label}: no video over TCP (${JSON.stringify(m)})\n${vbank.log.slice(-15).join('\n')}`);
        await new Promise((r) => setTimeout(r, 1000));
        m = await media(page);
      }
      assert.equal(m.protocol, 'tcp', `${label}'s selected candidate pair is TCP`);
    }
  });
});

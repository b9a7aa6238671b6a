// An end-to-end encrypted call on a real node (`vbank up --e2ee-direct`, key ceremony held): the customer page and the
// teller console encrypt every frame in their workers and decode each other's video; a WHEP player in the same call
// (no key) receives the frames and decodes none; a specialist joins and leaves, and the key ids on the frames the
// customer receives move to a new epoch each time, without a frame failing; the recorder decodes a still of the
// customer's camera for KYC with the epoch key it holds; a browser with insertable streams only joins through them;
// a browser without frame encryption is refused with a message. Then the recording verifies and exports to an MP4
// with every camera, fused from the ciphertext with the epochs' keys opened by keyd for the viewer; and neither the
// gateway's memory nor the node's logs hold those keys.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { VBANK, framesDecoded, openCall, serviceAs, startRecordedVbank, withBrowser } from './harness.mjs';

let vbank;
let scratch;
before(async () => {
  vbank = await startRecordedVbank({ e2ee: 'aes-256-gcm' });
  scratch = mkdtempSync(join(tmpdir(), 'vbank-e2ee-'));
});
after(async () => {
  await vbank?.stop();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

const json = (...args) => JSON.parse(execFileSync(VBANK, ['--config', vbank.urls.config, '--json', ...args], { encoding: 'utf8' }));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const e2eeStats = (page) => page.evaluate(() => window.vbankCall.e2ee.stats());
const epochOf = (kid) => Number(BigInt(kid) >> 8n);
const slotOf = (kid) => Number(BigInt(kid) & 0xffn);

/** Which of `needles` occur anywhere in the writable memory of process `pid`. */
function inMemory(pid, needles) {
  const found = new Set();
  const fd = openSync(`/proc/${pid}/mem`, 'r');
  try {
    for (const line of readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
      const m = line.match(/^([0-9a-f]+)-([0-9a-f]+) rw/);
      if (!m) continue;
      const [start, end] = [parseInt(m[1], 16), parseInt(m[2], 16)];
      const overlap = Math.max(...needles.map((n) => n.length));
      for (let at = start; at < end; at += (1 << 20)) {
        const len = Math.min((1 << 20) + overlap, end - at);
        const buf = Buffer.alloc(len);
        let n = 0;
        try { n = readSync(fd, buf, 0, len, at); } catch { break; }
        const chunk = buf.subarray(0, n);
        for (const needle of needles) if (chunk.indexOf(needle) >= 0) found.add(needle.toString('hex'));
      }
    }
  } finally {
    closeSync(fd);
  }
  return found;
}

test('an end-to-end encrypted call: both pages decode, a keyless WHEP player decodes nothing, keys rotate on a specialist\'s leave, the recording exports, the gateway holds no key', async () => {
  const room = 'e2ee-call';
  let fromCustomer;
  await withBrowser('e2ee-call', async (context) => {
    const { customer, teller } = await openCall(context, vbank, room);
    const deadline = Date.now() + 30_000;
    while ((await framesDecoded(customer)) < 60 || (await framesDecoded(teller)) < 60) {
      if (Date.now() > deadline) {
        const stats = await Promise.all([customer, teller].map((p) => p.evaluate(async () => ({ suite: window.vbankCall?.e2ee?.suite, state: document.getElementById('call-state').textContent, stats: await window.vbankCall?.e2ee?.stats() }))));
        assert.fail(`encrypted media did not flow both ways: ${JSON.stringify(stats)}\n${vbank.log.filter((l) => /media key|e2ee|error/i.test(l)).slice(-20).join('\n')}`);
      }
      await sleep(500);
    }
    for (const page of [customer, teller]) {
      assert.equal(await page.evaluate(() => window.vbankCall.e2ee.suite), 'aes-256-gcm');
      const s = await e2eeStats(page);
      assert.ok(s.encrypted > 50 && s.decrypted > 50, JSON.stringify(s));
    }

    // A WHEP player (no worker, no key) gets the same frames from the gateway and cannot decode them.
    const player = await context.newPage();
    await player.goto(vbank.urls.customer);
    const status = await player.evaluate(async (r) => {
      const pc = new RTCPeerConnection();
      pc.addTransceiver('video', { direction: 'recvonly' });
      pc.addTransceiver('audio', { direction: 'recvonly' });
      await pc.setLocalDescription(await pc.createOffer());
      const res = await fetch(`/whep/${r}`, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
      if (res.status === 201) await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
      window.whep = pc;
      return res.status;
    }, room);
    assert.equal(status, 201);
    const whep = () => player.evaluate(async () => {
      const v = { bytes: 0, received: 0, decoded: 0 };
      (await window.whep.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') {
          v.bytes += s.bytesReceived ?? 0;
          v.received += s.framesReceived ?? 0;
          v.decoded += s.framesDecoded ?? 0;
        }
      });
      return v;
    });
    for (let i = 0; i < 40 && (await whep()).bytes < 100_000; i++) await sleep(250);
    await sleep(2000);
    const seen = await whep();
    assert.ok(seen.bytes >= 100_000 && seen.received >= 40, `the WHEP player received the frames: ${JSON.stringify(seen)}`);
    assert.equal(seen.decoded, 0, `the WHEP player decoded nothing: ${JSON.stringify(seen)}`);

    // A specialist joins (a new epoch), then leaves (another): the customer keeps decoding throughout.
    const before = await e2eeStats(customer);
    const epochBefore = await customer.evaluate(() => window.vbankCall.e2ee.epoch);
    const specialist = await context.newPage();
    await specialist.goto(`${vbank.urls.teller}?room=${room}&role=specialist`);
    await specialist.click('#join');
    for (let i = 0; i < 80 && (await framesDecoded(specialist)) < 30; i++) await sleep(250);
    assert.ok((await framesDecoded(specialist)) >= 30, 'the specialist decodes the call');
    const specialistSlot = await specialist.evaluate(() => window.vbankCall.e2ee.slot);
    const joinedEpoch = await customer.evaluate(() => window.vbankCall.e2ee.epoch);
    assert.ok(joinedEpoch > epochBefore, 'a join starts an epoch');
    await specialist.click('#hangup');
    await specialist.close();
    let after;
    for (let i = 0; i < 40; i++) {
      after = await e2eeStats(customer);
      if (after.kids.some((k) => epochOf(k) > joinedEpoch)) break;
      await sleep(250);
    }
    const leftEpoch = await customer.evaluate(() => window.vbankCall.e2ee.epoch);
    assert.ok(leftEpoch > joinedEpoch, 'a leave starts an epoch');
    const byEpoch = (e) => after.kids.filter((k) => epochOf(k) === e).map(slotOf);
    assert.ok(byEpoch(joinedEpoch).includes(specialistSlot), `the specialist's frames in epoch ${joinedEpoch}: ${after.kids}`);
    assert.ok(byEpoch(leftEpoch).length > 0, `frames under the new epoch after the leave: ${after.kids}`);
    assert.ok(!byEpoch(leftEpoch).includes(specialistSlot), 'nothing from the departed specialist after the leave');
    assert.equal(after.failed - before.failed, 0, `no frame failed across the rotations: ${JSON.stringify({ before, after })}`);
    fromCustomer = await customer.evaluate(() => window.vbankCall.e2ee.slot);
    assert.ok(fromCustomer >= 1);

    // KYC's still of the customer's camera: the recorder opens the encrypted keyframe with the epoch key it holds.
    const live = json('recordings', 'list', '--call', room, '--viewer', 'auditor-1').recordings[0];
    const still = await serviceAs(vbank.urls.config, 'kyc', 'recorder', `/v1/stills/${live.id}`, { track: 'customer/camera' });
    assert.equal(still.status, 200, String(still.body));
    const png = join(scratch, 'still.png');
    writeFileSync(png, still.body);
    const probed = JSON.parse(execFileSync('ffprobe', ['-v', 'error', '-show_streams', '-of', 'json', png], { encoding: 'utf8' }));
    assert.equal(probed.streams[0].width, 640, 'a decoded picture of the customer camera');

    // A browser with insertable streams but no RTCRtpScriptTransform (an older Chromium) joins through them.
    const streams = await context.newPage();
    await streams.addInitScript(() => { delete window.RTCRtpScriptTransform; });
    await streams.goto(`${vbank.urls.teller}?room=${room}&role=specialist`);
    await streams.click('#join');
    for (let i = 0; i < 80 && (await framesDecoded(streams)) < 30; i++) await sleep(250);
    assert.equal(await streams.evaluate(() => window.vbankCall.e2ee.mode), 'insertable-streams');
    assert.ok((await framesDecoded(streams)) >= 30, 'the insertable-streams page decodes the call');
    const viaStreams = await e2eeStats(streams);
    assert.ok(viaStreams.encrypted > 30 && viaStreams.decrypted > 30, JSON.stringify(viaStreams));
    await streams.click('#hangup');
    await streams.close();

    // A browser with neither is refused, not let in to weaken the call.
    const old = await context.newPage();
    await old.addInitScript(() => { delete window.RTCRtpScriptTransform; delete RTCRtpSender.prototype.createEncodedStreams; });
    await old.goto(`${vbank.urls.customer}?room=${room}`);
    await old.click('#join');
    await old.locator('#call-state', { hasText: 'end-to-end encrypted' }).waitFor({ timeout: 15_000 });

    await teller.click('#hangup');
    await customer.click('#hangup');
  });

  let rec;
  const deadline = Date.now() + 30_000;
  for (;;) {
    rec = json('recordings', 'list', '--call', room, '--viewer', 'auditor-1').recordings[0];
    if (rec?.state === 'sealed') break;
    assert.ok(Date.now() < deadline, `no sealed recording: ${JSON.stringify(rec)}\n${vbank.log.slice(-20).join('\n')}`);
    await sleep(1000);
  }
  const verified = json('recordings', 'verify', join(vbank.urls.data_dir, 'recordings', rec.id));
  assert.equal(verified.ok, true, JSON.stringify(verified));
  const mp4 = join(scratch, 'e2ee.mp4');
  const out = json('recordings', 'export', rec.id, '--viewer', 'auditor-1', '--reason', 'e2ee test review', '--out', mp4);
  assert.ok(out.bytes > 10_000, JSON.stringify(out));
  const probe = JSON.parse(execFileSync('ffprobe', ['-v', 'error', '-show_streams', '-of', 'json', mp4], { encoding: 'utf8' }));
  assert.ok(probe.streams.find((s) => s.codec_type === 'video')?.width >= 1280, 'the cameras side by side');
  for (const x of [0, 640]) {
    const r = spawnSync('ffmpeg', ['-v', 'info', '-ss', '3', '-i', mp4, '-frames:v', '1', '-vf',
      `crop=640:480:${x}:0,signalstats,metadata=print`, '-f', 'null', '-'], { encoding: 'utf8' });
    const get = (k) => Number(new RegExp(`signalstats\\.${k}=([0-9.]+)`).exec(r.stderr)?.[1] ?? -1);
    assert.ok(get('YMAX') - get('YMIN') > 40, `camera cell at x=${x} shows a picture (decrypted): ${r.stderr.slice(-400)}`);
  }

  // The epochs' keys, as the recorder may open them (audited): none is in the gateway's memory or any log.
  const events = json('recordings', 'events', rec.id, '--viewer', 'auditor-1').events.filter((e) => e.kind === 'media_key');
  assert.ok(events.length >= 4, `an epoch per join and leave: ${events.map((e) => e.epoch)}`);
  const keys = [];
  for (const e of events) {
    const { status: st, body } = await serviceAs(vbank.urls.config, 'recorder', 'keyd', '/v1/dek/open', {
      purpose: 'media', envelope: e.envelope, context: e.context, on_behalf: 'auditor-1', reason: 'e2ee test: key search',
    });
    assert.equal(st, 200, JSON.stringify(body));
    keys.push(Buffer.from(body.key, 'hex'));
  }
  const { status: refused } = await serviceAs(vbank.urls.config, 'gateway', 'keyd', '/v1/dek/open', { purpose: 'media', envelope: events[0].envelope, context: events[0].context });
  assert.equal(refused, 403, 'the gateway may not open a media key');
  const ps = execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' }).split('\n');
  const gateway = ps.find((l) => l.includes(vbank.urls.config) && /\sgateway(\s|$)/.test(l))?.trim().split(/\s+/)[0];
  assert.ok(gateway, `the gateway process:\n${ps.filter((l) => l.includes('vbank')).join('\n')}`);
  const needles = keys.flatMap((k) => [k, Buffer.from(k.toString('hex'))]);
  const control = Buffer.from(`media:${room}:1`);
  const found = inMemory(gateway, [...needles, control]);
  assert.ok(found.has(control.toString('hex')), 'the scan reads the gateway\'s memory (it finds a key context it relayed)');
  found.delete(control.toString('hex'));
  assert.equal(found.size, 0, 'no media key, raw or hex, in the gateway\'s memory');
  const logs = vbank.log.join('\n');
  for (const k of keys) assert.ok(!logs.includes(k.toString('hex')), 'no media key in the logs');
});

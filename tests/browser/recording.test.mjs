// 双录 of a browser call, end to end: after the key ceremony a customer and a teller talk in headless Chromium; the
// gateway has the recorder join, and closes and seals the recording when they hang up. The recording verifies
// against its manifest and seal, and `vbank recordings export` gives an MP4 that ffprobe reads with both cameras
// side by side, the mixed audio, the capture-time track, and the burned-in overlay band; the export is audited.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { VBANK, ceremony, framesDecoded, openCall, startVbank, withBrowser } from './harness.mjs';

let vbank;
let scratch;
before(async () => {
  vbank = await startVbank();
  scratch = mkdtempSync(join(tmpdir(), 'vbank-rec-'));
});
after(async () => {
  await vbank?.stop();
  // VBANK_KEEP=1 keeps the export and the audit log for a look.
  if (scratch && !process.env.VBANK_KEEP) rmSync(scratch, { recursive: true, force: true });
});

const cli = (...args) => execFileSync(VBANK, ['--config', vbank.urls.config, ...args], { encoding: 'utf8' });
const json = (...args) => JSON.parse(cli('--json', ...args));

/** Luma statistics of one frame 3 s in, cropped to `crop` (w:h:x:y). */
function signal(mp4, crop) {
  const r = spawnSync('ffmpeg', ['-v', 'info', '-ss', '3', '-i', mp4, '-frames:v', '1', '-vf',
    `crop=${crop},signalstats,metadata=print`, '-f', 'null', '-'], { encoding: 'utf8' });
  const get = (k) => Number(new RegExp(`signalstats\\.${k}=([0-9.]+)`).exec(r.stderr)?.[1] ?? -1);
  return { yavg: get('YAVG'), ymin: get('YMIN'), ymax: get('YMAX') };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test('a browser call is recorded, sealed, verifies, and exports to an MP4 with both cameras, audio and overlay', async () => {
  await ceremony(vbank, scratch);
  await withBrowser('recording', async (context) => {
    const { customer, teller } = await openCall(context, vbank, 'rec-call');
    const deadline = Date.now() + 30_000;
    while ((await framesDecoded(customer)) < 150 || (await framesDecoded(teller)) < 150) {
      assert.ok(Date.now() < deadline, `media did not flow both ways\n${vbank.log.slice(-20).join('\n')}`);
      await sleep(500);
    }
    await teller.click('#hangup');
    await customer.click('#hangup');
  });

  let rec;
  const deadline = Date.now() + 30_000;
  for (;;) {
    rec = json('recordings', 'list', '--call', 'rec-call', '--viewer', 'auditor-1').recordings[0];
    if (rec?.state === 'sealed') break;
    assert.ok(Date.now() < deadline, `no sealed recording of rec-call: ${JSON.stringify(rec)}\n${vbank.log.slice(-20).join('\n')}`);
    await sleep(1000);
  }
  assert.ok(rec.tracks >= 5, `both cameras, both microphones and the events: ${JSON.stringify(rec)}`);
  // The gateway told the recorder whose track each m-line carries, and the call's joins and leaves are in it.
  const shown = json('recordings', 'show', rec.id, '--viewer', 'auditor-1');
  const labels = shown.tracks.map((t) => t.label).sort();
  for (const l of ['call/events', 'customer/camera', 'customer/microphone', 'teller/camera', 'teller/microphone']) {
    assert.ok(labels.includes(l), `track ${l} in ${JSON.stringify(labels)}`);
  }
  assert.equal(shown.verifies, true, JSON.stringify(shown));
  const dir = join(vbank.urls.data_dir, 'recordings', rec.id);
  const verified = json('recordings', 'verify', dir);
  assert.equal(verified.ok, true, JSON.stringify(verified));

  const mp4 = join(scratch, 'export.mp4');
  const out = json('recordings', 'export', rec.id, '--viewer', 'auditor-1', '--reason', 'browser test review', '--out', mp4);
  assert.ok(out.bytes > 10_000, JSON.stringify(out));
  const probe = JSON.parse(execFileSync('ffprobe', ['-v', 'error', '-show_streams', '-show_format', '-of', 'json', mp4], { encoding: 'utf8' }));
  const streams = (type) => probe.streams.filter((s) => s.codec_type === type);
  const [video] = streams('video');
  assert.equal(video.codec_name, 'h264');
  assert.equal(video.width, 1280, 'two 640-wide camera cells side by side');
  assert.equal(streams('audio')[0]?.codec_name, 'aac');
  assert.equal(streams('subtitle')[0]?.codec_name, 'mov_text', 'the capture-time track');
  assert.ok(Number(probe.format.duration) >= 4, `duration ${probe.format.duration}`);
  // Both camera cells show pictures (Chromium's fake camera is never flat), and the band under them carries text.
  for (const x of [0, 640]) {
    const cell = signal(mp4, `640:480:${x}:0`);
    assert.ok(cell.ymax - cell.ymin > 40, `camera cell at x=${x} is flat: ${JSON.stringify(cell)}`);
  }
  const band = signal(mp4, '1280:48:0:480');
  assert.ok(band.ymax > 180 && band.yavg < 100, `overlay band: ${JSON.stringify(band)}`);

  // The export is in the audit log: who, what, why, and the key opened for it.
  const log = join(scratch, 'audit.jsonl');
  cli('audit', 'export', '--out', log);
  const entries = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const exported = entries.find((e) => e.action === 'recording.export' && e.target === rec.id);
  assert.ok(exported, 'recording.export audited');
  assert.match(exported.actor, /auditor-1/);
  assert.match(exported.detail, /browser test review/);
  assert.ok(entries.some((e) => e.action === 'dek.open' && /auditor-1/.test(e.actor) && /browser test review/.test(e.detail)));
  assert.ok(entries.some((e) => e.action === 'recording.search' && /auditor-1/.test(e.actor)));
});

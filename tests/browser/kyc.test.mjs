// Identity checks (身份核验) from the teller console during a real call on `vbank up`: the ID card read by OCR from
// the customer's camera and verified as read; the live face compared with the card's portrait; face in frame on what the
// customer's camera shows now (no face, one face, two faces — decoded by the appliance from the customer's own video
// track), then 联网核查 through the Tencent adapter against the vendor simulator (match, mismatch, no record, a
// malformed number caught locally, the vendor failing twice). The teller sees masked results; the sealed recording
// holds a sealed attestation per check and no ID number or name.
//
// The customer's camera is a canvas the test paints (the fixture face, two of them, or nothing), sent as the page's
// camera track through the ordinary WebRTC path.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { request } from 'node:https';
import { after, before, test } from 'node:test';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { framesDecoded, launch, screenshots, startRecordedVbank, supervisorConsole } from './harness.mjs';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
const FACE = `data:image/jpeg;base64,${readFileSync(join(FIXTURES, 'faces/astronaut.jpg')).toString('base64')}`;
/** The development node's simulated people (appliance/vbank/src/up/kyc_dev.rs), with their check characters. */
const WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const withCheck = (first17) => first17 + '10X98765432'[[...first17].reduce((s, d, i) => s + Number(d) * WEIGHTS[i], 0) % 11];
const PERSON = { name: '测试甲', id: withCheck('11010119900307002') };
const OTHER = { name: '测试乙', id: withCheck('11010119851111003') };

/** The photo side of `p`'s ID card (synthetic, GB 19781 layout, the fixture face cropped close as the portrait), drawn by ffmpeg
 * with Debian's CJK font; a data URL. */
function idCard(p) {
  const dir = mkdtempSync(join(tmpdir(), 'vbank-card-'));
  try {
    const field = (name, text, size, x, y, font = '/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc') => {
      writeFileSync(join(dir, name), text);
      return `drawtext=fontfile=${font}:textfile=${join(dir, name)}:fontsize=${size}:fontcolor=black:x=${x}:y=${y}`;
    };
    const graph = [
      `[0][1]overlay=590:70`,
      field('a', '姓名', 24, 50, 70), field('b', p.name, 32, 140, 66),
      field('c', '性别', 24, 50, 130), field('d', '女', 28, 140, 128), field('e', '民族', 24, 250, 130), field('f', '汉', 28, 340, 128),
      field('g', '出生', 24, 50, 190), field('h', `${p.id.slice(6, 10)} 年 ${Number(p.id.slice(10, 12))} 月 ${Number(p.id.slice(12, 14))} 日`, 28, 140, 188),
      field('i', '住址', 24, 50, 250), field('j', '北京市东城区景山前街4号', 28, 140, 248),
      field('k', '公民身份号码', 24, 50, 440), field('l', p.id, 34, 250, 434, '/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf'),
    ].join(',');
    const out = join(dir, 'card.png');
    execFileSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', 'color=c=0xe6ecef:s=856x540',
      '-i', join(FIXTURES, 'faces/astronaut.jpg'), '-filter_complex', `[1]crop=130:162:104:20,scale=220:272[f];${graph.replace('[0][1]', '[0][f]')}`,
      '-frames:v', '1', out]);
    return `data:image/png;base64,${readFileSync(out).toString('base64')}`;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

let vbank;
before(async () => { vbank = await startRecordedVbank(); });
after(async () => { await vbank?.stop(); });

const cli = (args, input) => vbank.cli(args, input);
const until = (what, check, ms) => vbank.until(what, check, ms);
const log = () => vbank.log.slice(-15).join('\n');

/** Queue faults at the vendor simulator through its control API (TLS checked against the simulator's own CA). */
function simulatorFaults(faults) {
  const url = new URL(vbank.urls.kyc_simulator);
  const ca = readFileSync(join(vbank.urls.data_dir, 'kyc-simulator', 'sim-ca.crt'));
  return new Promise((ok, fail) => {
    const req = request({ host: url.hostname, port: url.port, path: '/_simulator/faults', method: 'POST', ca, servername: 'faceid.tencentcloudapi.com', headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? ok() : fail(new Error(`simulator: ${res.statusCode}`))));
    });
    req.on('error', fail);
    req.end(JSON.stringify(faults));
  });
}

/** The customer's camera: a canvas painted with `window.setScene([...image URLs])` (none: an empty grey room). */
function paintedCamera() {
  const canvas = document.createElement('canvas');
  canvas.width = 640;
  canvas.height = 480;
  const g = canvas.getContext('2d');
  let images = [];
  let held = false; // a card held close: it fills the picture
  window.setScene = async (urls, card = false) => {
    images = await Promise.all(urls.map(async (u) => { const i = new Image(); i.src = u; await i.decode(); return i; }));
    held = card;
  };
  setInterval(() => {
    g.fillStyle = '#7f7f7f';
    g.fillRect(0, 0, 640, 480);
    if (held) g.drawImage(images[0], 4, 38, 632, 399);
    else if (images.length === 1) g.drawImage(images[0], 128, 48, 384, 384);
    else images.forEach((img, k) => g.drawImage(img, 10 + k * 320, 90, 300, 300));
    g.fillStyle = `rgb(${Date.now() % 255}, 0, 0)`; // a changing pixel, so the encoder keeps sending
    g.fillRect(0, 0, 2, 2);
  }, 66);
  const real = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = async (c) => {
    const stream = c.audio ? await real({ audio: c.audio }) : new MediaStream();
    if (c.video) stream.addTrack(canvas.captureStream(15).getVideoTracks()[0]);
    return stream;
  };
}

test('identity checks from the teller console: face in frame, 联网核查 with masked results, attested in the recording', async () => {
  cli(['accounts', 'add', 'li', '--business', 'corporate-account'], 'Corporate2026\n');
  cli(['accounts', 'add', 'chen', '--role', 'supervisor'], 'Supervise2026\n');
  const { browser } = await launch();
  try {
    const desk = await browser.newContext({ ignoreHTTPSErrors: true, locale: 'zh-CN', viewport: { width: 1280, height: 1000 } });
    const teller = await desk.newPage();
    await teller.goto(vbank.urls.teller);
    await teller.fill('#login-name', 'li');
    await teller.fill('#login-password', 'Corporate2026');
    await teller.click('#login-form button[type=submit]');
    await teller.locator('#desk-controls').waitFor();
    await teller.click('#available');
    await teller.locator('#teller-state', { hasText: 'available' }).waitFor();

    const phone = await browser.newContext({ ignoreHTTPSErrors: true, locale: 'zh-CN', viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    await phone.addInitScript(paintedCamera);
    const customer = await phone.newPage();
    await customer.goto(vbank.urls.customer);
    await customer.selectOption('#business', 'corporate-account');
    await customer.locator('#consent-text', { hasText: '保存 5 年' }).waitFor();
    await customer.check('#consent-ok');
    await customer.click('#queue');
    await teller.locator('#ring').waitFor({ timeout: 15_000 });
    await teller.keyboard.press('a');
    await until('no media both ways', async () => (await framesDecoded(teller)) > 20 && (await framesDecoded(customer)) > 20, 30_000);
    await teller.locator('#kyc').waitFor();

    // The customer holds their card to the camera; OCR reads it on the appliance, the teller sees it masked.
    await customer.evaluate(([url]) => window.setScene([url], true), [idCard(PERSON)]);
    await new Promise((r) => setTimeout(r, 1500));
    await teller.click('#kyc-card-front');
    await teller.locator('#kyc-card-result[data-state="read"]').waitFor({ timeout: 30_000 })
      .catch(async (e) => { throw new Error(`${e.message}\n${JSON.stringify(await teller.evaluate(() => window.kycLog))}\n${log()}`); });
    const card = await teller.locator('#kyc-card-result').innerText();
    assert.ok(card.includes('测*甲') && card.includes(`110101********${PERSON.id.slice(-4)}`) && card.includes('汉'), card);
    await screenshots(desk, 'kyc-0-id-card');
    await teller.click('#kyc-identity-card');
    await teller.locator('#kyc-identity-result[data-state="match"]').waitFor({ timeout: 20_000 });
    assert.ok(await teller.locator('#kyc-identity-card').isDisabled(), 'a card read is used once');

    // Face in frame, on what the camera shows at the moment of the check.
    const face = async (scene, verdict) => {
      await customer.evaluate((urls) => window.setScene(urls), scene);
      await new Promise((r) => setTimeout(r, 700));
      await teller.click('#kyc-face');
      await teller.locator(`#kyc-face-result[data-state="${verdict}"]`).waitFor({ timeout: 20_000 })
        .catch(async (e) => { throw new Error(`${e.message}\n${JSON.stringify(await teller.evaluate(() => window.kycLog))}\n${log()}`); });
    };
    await face([], 'no-face');
    assert.match(await teller.locator('#kyc-face-result').innerText(), /face the camera/);
    await face([FACE], 'one-face');
    await screenshots(desk, 'kyc-1-face-in-frame');
    await face([FACE, FACE], 'several-faces');
    assert.match(await teller.locator('#kyc-face-result').innerText(), /leave the picture/);
    await face([FACE], 'one-face');
    // The live face against the card's portrait (advisory).
    await teller.click('#kyc-compare');
    await teller.locator('#kyc-compare-result[data-state="likely-same"]').waitFor({ timeout: 20_000 })
      .catch(async (e) => { throw new Error(`${e.message}\n${JSON.stringify(await teller.evaluate(() => window.kycLog))}\n${log()}`); });
    assert.match(await teller.locator('#kyc-compare-result').innerText(), /advisory/);

    // 联网核查 through the vendor simulator: the teller sees the answer masked, and the typed number is cleared.
    const identity = async (name, id, verdict) => {
      await teller.fill('#kyc-name', name);
      await teller.fill('#kyc-id', id);
      await teller.click('#kyc-identity');
      await teller.locator(`#kyc-identity-result[data-state="${verdict}"]`).waitFor({ timeout: 20_000 })
        .catch(async (e) => { throw new Error(`${e.message}\n${JSON.stringify(await teller.evaluate(() => window.kycLog))}\n${log()}`); });
      return teller.locator('#kyc-identity-result').innerText();
    };
    const shown = await identity(PERSON.name, PERSON.id, 'match');
    assert.ok(shown.includes(`110101********${PERSON.id.slice(-4)}`) && shown.includes('测*甲'), shown);
    assert.ok(!shown.includes(PERSON.id) && !shown.includes(PERSON.name), shown);
    assert.equal(await teller.inputValue('#kyc-id'), '');
    await screenshots(desk, 'kyc-2-identity');
    assert.match(await identity(OTHER.name, PERSON.id, 'mismatch'), /不一致/);
    assert.match(await identity(PERSON.name, withCheck('11010119900307999'), 'no-record'), /库中无此号/);
    const wrongCheck = PERSON.id.slice(0, 17) + (PERSON.id.endsWith('0') ? '1' : '0');
    assert.match(await identity(PERSON.name, wrongCheck, 'bad-input'), /check/i);
    assert.equal(await teller.inputValue('#kyc-id'), wrongCheck, 'a number refused as malformed stays for the teller to correct');
    // The company's credit code (a registered enterprise's, as in the unit tests), and one with its check misread.
    await teller.fill('#kyc-uscc', '91440300708461136T');
    await teller.click('#kyc-uscc-check');
    await teller.locator('#kyc-uscc-result[data-state="valid"]').waitFor({ timeout: 10_000 });
    await teller.fill('#kyc-uscc', '91440300708461136A');
    await teller.click('#kyc-uscc-check');
    await teller.locator('#kyc-uscc-result[data-state="invalid"]').waitFor({ timeout: 10_000 });
    assert.match(await teller.locator('#kyc-uscc-result').innerText(), /check character/);
    // Tencent fails twice (the one automatic retry included): the fallback vendor (Alibaba) answers.
    await simulatorFaults([{ status: 503 }, { status: 503 }]);
    assert.match(await identity(PERSON.name, PERSON.id, 'match'), /一致/);
    assert.match(await teller.evaluate(() => window.kycLog.at(-1).engine), /alibaba/);
    // Both fail: the teller is told what to do.
    await simulatorFaults([{ status: 503 }, { status: 503 }, { status: 503 }, { status: 503 }]);
    assert.match(await identity(PERSON.name, PERSON.id, 'unavailable'), /联网核查服务暂不可用/);
    const answers = await teller.evaluate(() => window.kycLog);
    assert.ok(!JSON.stringify(answers).includes(PERSON.id) && !JSON.stringify(answers).includes(PERSON.name), 'nothing unmasked reaches the console');

    await teller.click('#hangup');
    await customer.click('#hangup');
    const room = (await teller.evaluate(() => window.deskLog)).find((m) => m.type === 'connected').room;
    const rec = await until(`no sealed recording of ${room}`, () => {
      const r = cli(['recordings', 'list', '--call', room, '--viewer', 'auditor-3']).recordings[0];
      return r?.state === 'sealed' && r;
    }, 30_000);
    const { events } = cli(['recordings', 'events', rec.id, '--viewer', 'auditor-3']);
    const kyc = events.filter((e) => e.kind === 'kyc');
    assert.deepEqual(kyc.filter((e) => e.step === 'face-in-frame').map((e) => e.result), ['no-face', 'one-face', 'several-faces', 'one-face']);
    assert.deepEqual(kyc.filter((e) => e.step === 'id-card').map((e) => [e.side, e.result]), [['front', 'read']]);
    assert.deepEqual(kyc.filter((e) => e.step === 'credit-code').map((e) => e.result), ['valid', 'invalid']);
    const compared = kyc.find((e) => e.step === 'face-compare');
    assert.ok(compared.result === 'likely-same' && compared.distance < 0.6 && compared.advisory, JSON.stringify(compared));
    const identities = kyc.filter((e) => e.step === 'identity');
    assert.deepEqual(identities.map((e) => e.result), ['match', 'match', 'mismatch', 'no-record', 'bad-input', 'match', 'unavailable']);
    assert.match(identities[0].engine, /tencent faceid IdCardVerification \(SM4-GCM\)/, 'the ID number went encrypted');
    assert.match(identities[5].engine, /alibaba/, 'the fallback vendor answered when Tencent could not');
    assert.equal(kyc.find((e) => e.step === 'identity').inputs.source, 'read from the ID card in this call');
    for (const e of kyc) {
      assert.match(e.seal?.signature ?? '', /^[0-9a-f]{128,}$/, JSON.stringify(e));
      assert.equal(e.call, room);
    }
    assert.match(kyc.find((e) => e.result === 'match').request_id, /^sim-/);
    assert.match(kyc[0].inputs.image_sm3, /^[0-9a-f]{64}$/);
    const all = JSON.stringify(events);
    for (const secret of [PERSON.id, PERSON.name, OTHER.name]) assert.ok(!all.includes(secret), 'the recording events carry tokens, not personal data');

    // The supervisor opens the recording and sees the call's personal-data ledger: what each check collected and
    // where it is kept.
    const { context: sup, page: supPage } = await supervisorConsole(browser, vbank, 'chen', 'Supervise2026');
    await supPage.fill('#rec-call', room);
    await supPage.click('#rec-form button[type=submit]');
    await supPage.click(`#recordings button[data-id="${rec.id}"]`);
    await supPage.locator('#rec-ledger tbody tr', { hasText: 'id-card' }).waitFor({ timeout: 10_000 });
    const ledger = await supPage.locator('#rec-ledger').innerText();
    assert.match(ledger, /name and ID number/);
    assert.match(ledger, /encrypted under a key in the HSM/);
    assert.match(ledger, /after 2 h/, 'and when each item is deleted');
    assert.ok(!ledger.includes(PERSON.id) && !ledger.includes(PERSON.name), 'the ledger names what was collected, not the data');
    await screenshots(sup, 'kyc-3-ledger');
  } catch (e) {
    await screenshots(browser.contexts()[0], 'FAILED-kyc').catch(() => {});
    throw e;
  } finally {
    await browser.close();
  }
});

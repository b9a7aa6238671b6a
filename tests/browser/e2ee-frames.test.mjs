// Frame encryption in Chromium itself: two peer connections in one page, the sender's encoded frames encrypted by
// the pages' worker (appliance/web/assets/e2ee/worker.js, RTCRtpScriptTransform) and the receiver's opened by its
// own worker holding the same call key. Video decodes; a receiver without the key decodes nothing; a key rotation
// (a new key id) goes through without a stop; the SM4-GCM suite runs in the WebAssembly module.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { withBrowser } from './harness.mjs';

const E2EE = resolve(import.meta.dirname, '../../appliance/web/assets/e2ee');

const PAGE = `<!doctype html><meta charset="utf-8"><title>e2ee frames</title><script type="module">
const wasm = await WebAssembly.compileStreaming(fetch('/sframe.wasm'));
function worker() {
  const w = new Worker('/e2ee/worker.js', { type: 'module' });
  w.postMessage({ type: 'wasm', module: wasm });
  return w;
}
const ask = (w, msg, type) => new Promise((ok) => {
  const on = ({ data }) => { if (data.type === type) { w.removeEventListener('message', on); ok(data); } };
  w.addEventListener('message', on);
  w.postMessage(msg);
});
window.key = (w, suite, kid, bytes, send, retireBefore) =>
  ask(w, { type: 'key', suite, kid, key: new Uint8Array(bytes), send, retireBefore }, 'keyed');
window.stats = async (w) => (await ask(w, { type: 'stats' }, 'stats')).stats;
window.call = async (txWorker, rxWorker) => {
  const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 } });
  const a = new RTCPeerConnection();
  const b = new RTCPeerConnection();
  a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate);
  b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate);
  const tx = a.addTransceiver(stream.getVideoTracks()[0], { direction: 'sendonly' });
  const vp8 = RTCRtpSender.getCapabilities('video').codecs.filter((c) => c.mimeType === 'video/VP8');
  tx.setCodecPreferences(vp8);
  tx.sender.transform = new RTCRtpScriptTransform(txWorker, { direction: 'send', codec: 'vp8' });
  b.ontrack = (e) => { e.receiver.transform = new RTCRtpScriptTransform(rxWorker, { direction: 'recv', codec: 'vp8' }); };
  await a.setLocalDescription();
  await b.setRemoteDescription(a.localDescription);
  await b.setLocalDescription();
  await a.setRemoteDescription(b.localDescription);
  return { a, b };
};
window.decoded = async (pc) => {
  let n = 0;
  (await pc.getStats()).forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video') n += r.framesDecoded ?? 0; });
  return n;
};
window.worker = worker;
window.ready = true;
</script>`;

function serve() {
  const server = createServer((req, res) => {
    const send = (body, type) => { res.writeHead(200, { 'content-type': type }); res.end(body); };
    if (req.url === '/') return send(PAGE, 'text/html; charset=utf-8');
    if (req.url === '/sframe.wasm') return send(readFileSync(process.env.VBANK_SFRAME_WASM), 'application/wasm');
    const m = req.url.match(/^\/e2ee\/(sframe|worker)\.js$/);
    if (m) return send(readFileSync(join(E2EE, `${m[1]}.js`)), 'text/javascript; charset=utf-8');
    res.writeHead(404).end();
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(server)));
}

for (const [suite, name, keyLen] of [[0x0005, 'AES-256-GCM on WebCrypto', 32], [0xf001, 'SM4-GCM in WebAssembly', 16]]) {
  test(`encrypted frames decode with the key and not without (${name}); a key rotation goes through`, async () => {
    assert.ok(process.env.VBANK_SFRAME_WASM, 'tests/run.sh builds the WebAssembly module');
    const server = await serve();
    try {
      await withBrowser(`e2ee-frames-${suite}`, async (context) => {
        const page = await context.newPage();
        await page.goto(`http://127.0.0.1:${server.address().port}/`);
        await page.waitForFunction(() => window.ready === true);
        const result = await page.evaluate(async ({ suite, keyLen }) => {
          const k1 = Array.from({ length: keyLen }, (_, i) => i + 1);
          const k2 = Array.from({ length: keyLen }, (_, i) => 200 - i);
          const [tx, rx, stranger, tx2] = [worker(), worker(), worker(), worker()];
          await key(tx, suite, 1, k1, true);
          await key(rx, suite, 1, k1, false);
          await key(stranger, suite, 9, k2, false); // keyed, but not with the call's key
          await key(tx2, suite, 1, k1, true);
          const good = await call(tx, rx);
          const bad = await call(tx2, stranger);
          const wait = (ms) => new Promise((r) => setTimeout(r, ms));
          for (let i = 0; i < 60 && (await decoded(good.b)) < 15; i++) await wait(100);
          const beforeRotation = await decoded(good.b);
          // Someone left: the receiver gets the new key first, then the sender switches; the old key is retired.
          await key(rx, suite, 2, k2, false);
          await key(tx, suite, 2, k2, true);
          const atRotation = await decoded(good.b);
          for (let i = 0; i < 60 && (await decoded(good.b)) < atRotation + 15; i++) await wait(100);
          await key(rx, suite, 2, k2, false, 2);
          return {
            beforeRotation, afterRotation: (await decoded(good.b)) - atRotation, strangerDecoded: await decoded(bad.b),
            tx: await stats(tx), rx: await stats(rx), stranger: await stats(stranger),
          };
        }, { suite, keyLen });
        assert.ok(result.beforeRotation >= 15, JSON.stringify(result));
        assert.ok(result.afterRotation >= 15, `decoding goes on after the rotation: ${JSON.stringify(result)}`);
        assert.deepEqual(result.rx.kids, ['1', '2'], 'the receiver saw both key ids');
        assert.equal(result.rx.failed, 0, JSON.stringify(result.rx));
        assert.equal(result.strangerDecoded, 0, 'without the key nothing decodes');
        assert.ok(result.stranger.noKey > 10 && result.stranger.decrypted === 0, JSON.stringify(result.stranger));
        const ms = (s) => (s.encrypted ? s.encryptMs / s.encrypted : s.decryptMs / s.decrypted).toFixed(3);
        console.log(`${name}: ${ms(result.tx)} ms to encrypt and ${ms({ decrypted: result.rx.decrypted, decryptMs: result.rx.decryptMs })} ms to open a 320×240 VP8 frame in the worker`);
      });
    } finally {
      server.close();
    }
  });
}

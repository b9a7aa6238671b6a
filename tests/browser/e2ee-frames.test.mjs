// Frame encryption in Chromium itself: two peer connections in one page, the sender's encoded frames encrypted by
// the pages' worker (appliance/web/assets/e2ee/worker.js, RTCRtpScriptTransform) and the receiver's opened by its
// own worker holding the same call key. Video decodes; a receiver without the key decodes nothing; a key rotation
// (a new key id) goes through without a stop; the SM4-GCM suite runs in the WebAssembly module.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serveE2eePage } from './e2ee-page.mjs';
import { withBrowser } from './harness.mjs';

for (const [suite, name, keyLen] of [[0x0005, 'AES-256-GCM on WebCrypto', 32], [0xf001, 'SM4-GCM in WebAssembly', 16]]) {
  test(`encrypted frames decode with the key and not without (${name}); a key rotation goes through`, async () => {
    assert.ok(process.env.VBANK_SFRAME_WASM, 'tests/run.sh builds the WebAssembly module');
    const server = await serveE2eePage();
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

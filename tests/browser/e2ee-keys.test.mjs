// The call key's way from keyd to the pages, end to end: each page's worker makes its P-256 key pair, keyd (after the
// key ceremony, on a real `vbank up` node) makes the epoch's media key under the media KEK and encrypts it to each
// worker's public key (`POST /v1/media-keys`, asked as the gateway over mTLS — this test stands where the gateway
// does in a call, e2ee-call.test.mjs), and the workers open it and carry encrypted video. The relay sees no key:
// neither in clear nor one it can open.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serveE2eePage } from './e2ee-page.mjs';
import { serviceAs, startRecordedVbank, withBrowser } from './harness.mjs';

test('keyd encrypts the call key to each page\'s worker; the workers open it and carry encrypted video', async () => {
  const vbank = await startRecordedVbank();
  const server = await serveE2eePage();
  try {
    await withBrowser('e2ee-keys', async (context) => {
      const page = await context.newPage();
      await page.goto(`http://127.0.0.1:${server.address().port}/`);
      await page.waitForFunction(() => window.ready === true);
      await page.evaluate(() => { window.tx = worker(); window.rx = worker(); window.other = worker(); });
      const [txPub, rxPub, otherPub] = await page.evaluate(async () => [await keypair(tx), await keypair(rx), await keypair(other)]);
      const hex = (b) => Buffer.from(b).toString('hex');
      const { status, body } = await serviceAs(vbank.urls.config, 'gateway', 'keyd', '/v1/media-keys', {
        call: 'call-e2ee', epoch: 1, alg: 'aes-256-gcm',
        recipients: [{ id: 'customer', public_key: hex(txPub) }, { id: 'teller', public_key: hex(rxPub) }],
      });
      assert.equal(status, 200, JSON.stringify(body));
      assert.equal(body.key, undefined, 'the relay gets no key in clear');
      assert.equal(body.context, 'media:call-e2ee:1');
      const blob = (id) => Array.from(Buffer.from(body.wrapped.find((w) => w.id === id).key, 'hex'));
      const result = await page.evaluate(async ({ customer, teller }) => {
        // The customer sends in slot 1, the teller in slot 2: frames carry key id 1 << 8 | 1.
        const a = await wrapped(tx, 0x0005, 1, 1, [1, 2], customer, 'media:call-e2ee:1');
        const b = await wrapped(rx, 0x0005, 1, 2, [1, 2], teller, 'media:call-e2ee:1');
        const stolen = await wrapped(other, 0x0005, 1, 2, [1, 2], teller, 'media:call-e2ee:1'); // another page's blob
        const wrongEpoch = await wrapped(rx, 0x0005, 2, 2, [1, 2], teller, 'media:call-e2ee:2');
        const { b: pc } = await call(tx, rx);
        for (let i = 0; i < 80 && (await decoded(pc)) < 15; i++) await new Promise((r) => setTimeout(r, 100));
        return { a, b, stolen, wrongEpoch, decoded: await decoded(pc), rx: await stats(rx) };
      }, { customer: blob('customer'), teller: blob('teller') });
      assert.ok(!result.a.error && !result.b.error, JSON.stringify(result));
      assert.match(result.stolen.error ?? '', /Error/, 'a worker cannot open a key encrypted to another');
      assert.match(result.wrongEpoch.error ?? '', /Error/, 'a key is bound to its epoch');
      assert.ok(result.decoded >= 15 && result.rx.failed === 0, JSON.stringify(result));
      assert.deepEqual(result.rx.kids, ['257'], "the customer's frames carry its key id: epoch 1, slot 1");
      assert.ok(otherPub.length === 65);
    });
  } finally {
    server.close();
    await vbank.stop();
  }
});

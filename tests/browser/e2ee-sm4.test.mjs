// An end-to-end encrypted call with the 国密 frame cipher (`[e2ee] suite = "sm4-gcm"`): the pages fetch the gateway's
// WebAssembly module (built from hsm/sframe; the page's CSP allows WebAssembly and nothing else new), and both sides
// decode each other's SM4-GCM-encrypted video.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { framesDecoded, openCall, startRecordedVbank, withBrowser } from './harness.mjs';

let vbank;
before(async () => { vbank = await startRecordedVbank({ e2ee: 'sm4-gcm' }); });
after(async () => { await vbank?.stop(); });

test('an SM4-GCM end-to-end encrypted call: the pages load the WebAssembly cipher from the gateway and decode each other', async () => {
  await withBrowser('e2ee-sm4', async (context) => {
    const { customer, teller } = await openCall(context, vbank, 'e2ee-sm4');
    const deadline = Date.now() + 30_000;
    while ((await framesDecoded(customer)) < 60 || (await framesDecoded(teller)) < 60) {
      assert.ok(Date.now() < deadline, `SM4-GCM media did not flow both ways\n${vbank.log.slice(-20).join('\n')}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    for (const page of [customer, teller]) {
      assert.equal(await page.evaluate(() => window.vbankCall.e2ee.suite), 'sm4-gcm');
      const s = await page.evaluate(() => window.vbankCall.e2ee.stats());
      assert.ok(s.encrypted > 50 && s.decrypted > 50, JSON.stringify(s));
    }
    await teller.click('#hangup');
    await customer.click('#hangup');
  });
});

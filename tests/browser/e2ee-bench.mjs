// Benchmark (not a test): the E2EE benchmark page (/e2ee-bench, appliance/web/e2ee-bench) in headless Chromium —
// added CPU per frame in the workers and added latency, AES-256-GCM (WebCrypto) and SM4-GCM (WebAssembly), against
// no worker and a pass-through worker measured in the same round. Prints each round and the medians with the SM4/AES
// ratios.
//   VBANK_SFRAME_WASM=…/vbank_sframe_wasm.wasm node tests/browser/e2ee-bench.mjs [--rounds 3] [--seconds 8] [--json]
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { launch } from './harness.mjs';

const WEB = resolve(import.meta.dirname, '../../appliance/web');
const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, seconds: { type: 'string', default: '8' }, json: { type: 'boolean' } } });
if (!process.env.VBANK_SFRAME_WASM) throw new Error('set VBANK_SFRAME_WASM to the built module (tests/run.sh builds it)');

// The same files the gateway serves, from the checkout.
const server = createServer((req, res) => {
  const send = (file, type) => { res.writeHead(200, { 'content-type': type }); res.end(readFileSync(file)); };
  const url = req.url.split('?')[0];
  if (url === '/e2ee-bench') return send(join(WEB, 'e2ee-bench/index.html'), 'text/html; charset=utf-8');
  if (url === '/assets/app.css') return send(join(WEB, 'assets/app.css'), 'text/css');
  if (url === '/assets/e2ee/sframe.wasm') return send(process.env.VBANK_SFRAME_WASM, 'application/wasm');
  const m = url.match(/^\/assets\/e2ee\/([a-z-]+\.js)$/);
  if (m) return send(join(WEB, 'assets/e2ee', m[1]), 'text/javascript');
  res.writeHead(404).end();
});
await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
const { browser, context } = await launch();
const rounds = [];
try {
  const page = await context.newPage();
  await page.goto(`http://127.0.0.1:${server.address().port}/e2ee-bench`);
  await page.waitForFunction(() => window.benchReady === true);
  for (let i = 0; i < Number(values.rounds); i++) {
    const rows = await page.evaluate((s) => window.runBench(s), Number(values.seconds));
    rounds.push(rows);
    if (!values.json) {
      console.log(`round ${i + 1}: ${rows.map((r) => `${r.cipher} ${r.frames} frames, enc ${r.encryptMs.toFixed(3)} ms, dec ${r.decryptMs.toFixed(3)} ms, `
        + `processing ${r.processingMs.toFixed(2)} ms, added ${r.addedMs.toFixed(2)} ms`).join('; ')}`);
    }
  }
} finally {
  await browser.close();
  server.close();
}
const summary = {};
for (const cipher of ['none', 'clear', 'aes-256-gcm', 'sm4-gcm']) {
  const of = (k) => median(rounds.map((rows) => rows.find((r) => r.cipher === cipher)[k]));
  summary[cipher] = { encryptMs: of('encryptMs'), decryptMs: of('decryptMs'), processingMs: of('processingMs'), addedMs: of('addedMs') };
}
const ratio = (k) => summary['sm4-gcm'][k] / summary['aes-256-gcm'][k];
const out = { rounds: rounds.length, seconds: Number(values.seconds), median: summary,
  sm4_over_aes: { encrypt: ratio('encryptMs'), decrypt: ratio('decryptMs'), added: ratio('addedMs') } };
if (values.json) console.log(JSON.stringify(out));
else {
  for (const [c, s] of Object.entries(summary)) {
    console.log(`median ${c}: encrypt ${s.encryptMs.toFixed(3)} ms/frame, decrypt ${s.decryptMs.toFixed(3)} ms/frame, `
      + `receiver processing ${s.processingMs.toFixed(2)} ms, added latency ${s.addedMs.toFixed(2)} ms`);
  }
  const r = out.sm4_over_aes;
  console.log(`SM4-GCM / AES-256-GCM: encrypt ×${r.encrypt.toFixed(2)}, decrypt ×${r.decrypt.toFixed(2)}, added latency ×${r.added.toFixed(2)}`);
}

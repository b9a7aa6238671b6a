// The frame-encryption benchmark page (/e2ee-bench): the camera goes to itself through two peer connections in this
// page — without any transform ('none'), through the call pages' worker (worker.js) on both ends passing frames
// through ('clear': a call that is not end-to-end encrypted), then encrypting with each suite. Per run it reports the
// mean CPU per frame in the sending and the receiving worker, the receiver's mean processing delay (packet in to
// frame decoded, WebRTC's own statistics: it includes the trip through the receiving worker), and the latency added:
// that delay over the run without a worker, plus the sender's encryption time (the trip into the sending worker is
// not in any statistic the browser keeps).
// `window.runBench(seconds)` resolves with the rows (tests/browser/e2ee-bench.mjs prints them).
import { SUITES } from './sframe.js';

const el = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let wasm = null;

function worker(suite) {
  const w = new Worker('/assets/e2ee/worker.js', { type: 'module' });
  if (suite === SUITES['sm4-gcm']) w.postMessage({ type: 'wasm', module: wasm });
  return w;
}

const ask = (w, msg, type) => new Promise((ok) => {
  const on = ({ data }) => { if (data.type === type) { w.removeEventListener('message', on); ok(data); } };
  w.addEventListener('message', on);
  w.postMessage(msg);
});

/** One run: `name` is 'none', 'clear' or a suite name. */
async function run(name, seconds) {
  const suite = SUITES[name];
  const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480, frameRate: 30 } });
  const [tx, rx] = [worker(suite), worker(suite)];
  if (suite) {
    const key = crypto.getRandomValues(new Uint8Array(suite === SUITES['sm4-gcm'] ? 16 : 32));
    await ask(tx, { type: 'key', suite, kid: 257, key, send: true }, 'keyed');
    await ask(rx, { type: 'key', suite, kid: 257, key, send: false }, 'keyed');
  } else {
    tx.postMessage({ type: 'clear' });
    rx.postMessage({ type: 'clear' });
  }
  const through = name !== 'none';
  const a = new RTCPeerConnection();
  const b = new RTCPeerConnection();
  a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate);
  b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate);
  const t = a.addTransceiver(stream.getVideoTracks()[0], { direction: 'sendonly' });
  t.setCodecPreferences(RTCRtpSender.getCapabilities('video').codecs.filter((c) => c.mimeType === 'video/VP8'));
  if (through) t.sender.transform = new RTCRtpScriptTransform(tx, { direction: 'send', codec: 'vp8' });
  b.ontrack = (e) => { if (through) e.receiver.transform = new RTCRtpScriptTransform(rx, { direction: 'recv', codec: 'vp8' }); };
  await a.setLocalDescription();
  await b.setRemoteDescription(a.localDescription);
  await b.setLocalDescription();
  await a.setRemoteDescription(b.localDescription);
  const inbound = async () => {
    let r = null;
    (await b.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') r = s; });
    return r;
  };
  await sleep(2000); // warm up: the first keyframe, the encoder ramping up
  const [s0, i0] = [await ask(tx, { type: 'stats' }, 'stats'), await inbound()];
  const r0 = (await ask(rx, { type: 'stats' }, 'stats')).stats;
  await sleep(seconds * 1000);
  const [s1, i1] = [await ask(tx, { type: 'stats' }, 'stats'), await inbound()];
  const r1 = (await ask(rx, { type: 'stats' }, 'stats')).stats;
  a.close();
  b.close();
  tx.terminate();
  rx.terminate();
  stream.getTracks().forEach((x) => x.stop());
  const frames = (i1?.framesDecoded ?? 0) - (i0?.framesDecoded ?? 0);
  const per = (ms, n) => (n > 0 ? ms / n : 0);
  return {
    cipher: name,
    frames,
    encryptMs: per(s1.stats.encryptMs - s0.stats.encryptMs, s1.stats.encrypted - s0.stats.encrypted),
    decryptMs: per(r1.decryptMs - r0.decryptMs, r1.decrypted - r0.decrypted),
    processingMs: per(1000 * ((i1?.totalProcessingDelay ?? 0) - (i0?.totalProcessingDelay ?? 0)), frames),
  };
}

/** Every mode once, in order; each row with the latency it adds over 'none'. */
window.runBench = async (seconds = 8) => {
  wasm ??= await WebAssembly.compileStreaming(fetch('/assets/e2ee/sframe.wasm'));
  const rows = [];
  for (const name of ['none', 'clear', 'aes-256-gcm', 'sm4-gcm']) {
    el('state').textContent = `${name} …`;
    rows.push(await run(name, seconds));
  }
  for (const r of rows) r.addedMs = r.processingMs - rows[0].processingMs + r.encryptMs;
  el('state').textContent = '';
  const body = el('results').querySelector('tbody');
  body.replaceChildren(...rows.map((r) => {
    const tr = document.createElement('tr');
    for (const v of [r.cipher, r.frames, r.encryptMs, r.decryptMs, r.processingMs, r.addedMs]) {
      const td = document.createElement('td');
      td.textContent = typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(3) : String(v);
      tr.append(td);
    }
    return tr;
  }));
  el('results').hidden = false;
  return rows;
};

el('run').onclick = () => window.runBench(Number(el('seconds').value)).catch((e) => { el('state').textContent = String(e); });
window.benchReady = true;

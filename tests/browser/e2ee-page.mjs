// A page that runs the pages' frame-encryption worker (appliance/web/assets/e2ee/) between two peer connections, served
// on loopback with the WebAssembly module, for the end-to-end encryption tests.
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

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
window.keypair = async (w) => Array.from((await ask(w, { type: 'keypair' }, 'keypair')).publicKey);
window.wrapped = (w, suite, epoch, slot, senders, blob, context) =>
  ask(w, { type: 'wrapped', suite, epoch, slot, senders, blob: new Uint8Array(blob), context }, 'keyed');
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

/** Serve the page; resolves with the server (its address().port). */
export function serveE2eePage() {
  const server = createServer((req, res) => {
    const send = (body, type) => { res.writeHead(200, { 'content-type': type }); res.end(body); };
    if (req.url === '/') return send(PAGE, 'text/html; charset=utf-8');
    if (req.url === '/sframe.wasm') return send(readFileSync(process.env.VBANK_SFRAME_WASM), 'application/wasm');
    const m = req.url.match(/^\/e2ee\/(sframe|worker|keys)\.js$/);
    if (m) return send(readFileSync(join(E2EE, `${m[1]}.js`)), 'text/javascript; charset=utf-8');
    res.writeHead(404).end();
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(server)));
}


// End-to-end encryption for a call page. The page's frame-encryption worker (worker.js) makes its P-256 key pair;
// the join carries the public half; when the gateway answers that the call is end-to-end encrypted, every frame the
// page sends and receives goes through the worker, which holds the call's media key (relayed by the gateway on
// every join and leave, encrypted to the worker by keyd). Frames reach the worker through RTCRtpScriptTransform or,
// where only that exists, insertable streams (createEncodedStreams). A browser with neither joins without a key, and
// the gateway refuses it a place in an encrypted call rather than let it downgrade the call.

const SUITES = { 'aes-256-gcm': 0x0005, 'sm4-gcm': 0xf001 };
const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
const bytes = (h) => new Uint8Array(h.match(/../g).map((x) => parseInt(x, 16)));
const codecOf = (track) => (track?.kind === 'audio' ? 'opus' : 'vp8');

/** The page's frame encryption, or null when this browser has none. */
export async function frameEncryption() {
  const script = 'RTCRtpScriptTransform' in window;
  const streams = !script && 'createEncodedStreams' in RTCRtpSender.prototype;
  if (!script && !streams) return null;
  const worker = new Worker('/assets/e2ee/worker.js', { type: 'module' });
  const ask = (msg, type) => new Promise((ok) => {
    const on = ({ data }) => { if (data.type === type) { worker.removeEventListener('message', on); ok(data); } };
    worker.addEventListener('message', on);
    worker.postMessage(msg);
  });
  const { publicKey } = await ask({ type: 'keypair' }, 'keypair');
  let suite = null;
  let epoch = 0;
  let slot = 0;
  const piped = new WeakSet(); // a sender or receiver hands over its streams once
  const through = (end, direction, codec) => {
    if (script) {
      end.transform = new RTCRtpScriptTransform(worker, { direction, codec });
    } else if (!piped.has(end)) {
      piped.add(end);
      const { readable, writable } = end.createEncodedStreams();
      worker.postMessage({ type: 'streams', direction, codec, readable, writable }, [readable, writable]);
    }
  };
  return {
    /** What the peer connection must be made with. */
    peerConfig: streams ? { encodedInsertableStreams: true } : {},
    /** How frames reach the worker: 'script-transform' or 'insertable-streams'. */
    mode: script ? 'script-transform' : 'insertable-streams',
    /** The worker's public key, for the join. */
    publicKey: hex(publicKey),
    /** The suite the gateway named, once the call is known to be encrypted. */
    get suite() { return suite; },
    /** The newest epoch whose key the worker holds. */
    get epoch() { return epoch; },
    /** This page's sender slot in the newest epoch: the low byte of its frames' key ids. */
    get slot() { return slot; },
    /** Route every frame of `senders` through the worker, before the offer (Chromium applies a sender's transform
     * only from the start): it drops them until the call turns out encrypted (a key) or not (`clear`). */
    send(senders) {
      for (const s of senders) through(s, 'send', codecOf(s.track));
    },
    /** The call is end-to-end encrypted with `name`: load what the suite needs. */
    async start(name) {
      if (!SUITES[name]) throw new Error(`the gateway asked for an unknown frame cipher ${name}`);
      if (name === 'sm4-gcm') {
        worker.postMessage({ type: 'wasm', module: await WebAssembly.compileStreaming(fetch('/assets/e2ee/sframe.wasm')) });
      }
      suite = name;
    },
    /** The call is not end-to-end encrypted: frames pass through. */
    clear() { worker.postMessage({ type: 'clear' }); },
    /** Open every frame `receiver` gets (in a call that is not encrypted, insertable streams still need piping). */
    receive(receiver) {
      if (suite) {
        through(receiver, 'recv', codecOf(receiver.track));
      } else if (streams && !piped.has(receiver)) {
        piped.add(receiver);
        const { readable, writable } = receiver.createEncodedStreams();
        readable.pipeTo(writable);
      }
    },
    /** A `media-key` signalling message: the epoch's key, encrypted to this worker. */
    async key(msg) {
      const r = await ask({
        type: 'wrapped', suite: SUITES[msg.suite], epoch: msg.epoch, slot: msg.slot, senders: msg.senders,
        blob: bytes(msg.key), context: msg.context,
      }, 'keyed');
      if (r.error) throw new Error(`the call's media key could not be opened: ${r.error}`);
      if (msg.epoch > epoch) [epoch, slot] = [msg.epoch, msg.slot];
    },
    /** Frames encrypted, opened, refused; key ids seen; milliseconds spent. */
    async stats() { return (await ask({ type: 'stats' }, 'stats')).stats; },
    close() { worker.terminate(); },
  };
}

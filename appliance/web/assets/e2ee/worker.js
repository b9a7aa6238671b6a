// The pages' frame-encryption worker (RTCRtpScriptTransform, or insertable streams handed over with
// {type: 'streams'}): every encoded frame a page sends is encrypted with the call's current media key, every frame it
// receives is opened with the key its header names (sframe.js).
// - {type: 'keypair'} answers with the public half of the worker's P-256 key pair (made once; the private half is
//   non-extractable and never leaves the worker), for the page to send with its join.
// - {type: 'wrapped', suite, epoch, slot, senders, blob, context} installs an epoch's media key keyd encrypted to that
//   key pair (keys.js), so the media key exists only inside the worker: it opens the frames of every sender slot
//   listed (key id epoch << 8 | slot), and this page sends as its own slot — at once on its first key, half a second
//   later on a rotation, so every page holds the new key before frames under it arrive. Two seconds after a
//   rotation the older epochs' keys are dropped.
// - {type: 'key', suite, kid, key, send} installs a key given in clear (tests, the benchmark page).
// - {type: 'clear'}: the call is not end-to-end encrypted; frames pass through untouched. Until a key or this
//   message comes, every frame is dropped: nothing leaves the page unencrypted by mistake.
// - {type: 'stats'} answers with counts and the milliseconds each frame took.
import { pageKeyPair, unwrapMediaKey } from './keys.js';
import { CODECS, SUITES, WasmFrames, WebCryptoFrames, clearPrefix, decodeHeader } from './sframe.js';

let frames = null; // WebCryptoFrames or WasmFrames, for the call's suite
let wasmModule = null;
let pair = null;
const stats = { encrypted: 0, decrypted: 0, failed: 0, noKey: 0, kids: [], encryptMs: 0, decryptMs: 0 };

async function engine(suite) {
  if (frames && frames.suite === suite) return frames;
  if (suite === SUITES['sm4-gcm']) {
    if (!wasmModule) throw new Error('the SM4-GCM suite needs the WebAssembly module');
    frames = await WasmFrames.load(wasmModule, suite);
  } else {
    frames = new WebCryptoFrames(suite);
  }
  return frames;
}

const kidOf = (epoch, slot) => (BigInt(epoch) << 8n) | BigInt(slot);
const SWITCH_MS = 500;
const RETIRE_MS = 2000;
let sending = null; // the epoch this page sends under

async function installEpoch(data, key) {
  const f = await engine(data.suite);
  for (const s of data.senders) await f.addKey(kidOf(data.epoch, s), key);
  const own = kidOf(data.epoch, data.slot);
  const first = sending === null;
  const switchOver = async () => {
    if (sending === null || data.epoch > sending) {
      await f.setSender(own, key);
      sending = data.epoch;
    }
    key.fill(0);
  };
  if (first) await switchOver(); else setTimeout(switchOver, SWITCH_MS);
  setTimeout(() => f.retireBefore(kidOf(data.epoch, 0)), RETIRE_MS);
  self.postMessage({ type: 'keyed', kid: String(own), epoch: data.epoch });
}

async function install(data, key) {
  const f = await engine(data.suite);
  const kid = BigInt(data.kid);
  if (data.send) await f.setSender(kid, key);
  await f.addKey(kid, key);
  if (data.retireBefore !== undefined) f.retireBefore(BigInt(data.retireBefore));
  self.postMessage({ type: 'keyed', kid: data.kid });
}

let clear = false; // the call is not end-to-end encrypted: frames pass as they are

self.onmessage = async ({ data }) => {
  if (data.type === 'wasm') wasmModule = data.module;
  if (data.type === 'clear') clear = true;
  // Insertable streams (browsers with createEncodedStreams but no RTCRtpScriptTransform): the page hands over the
  // sender's or receiver's streams.
  if (data.type === 'streams') pipe(data.readable, data.writable, data.direction, data.codec);
  if (data.type === 'keypair') {
    pair = pair ?? await pageKeyPair();
    self.postMessage({ type: 'keypair', publicKey: pair.publicKey });
  }
  if (data.type === 'key') await install(data, data.key);
  if (data.type === 'wrapped') {
    try {
      if (!pair) throw new Error('no key pair: ask for one first');
      const key = await unwrapMediaKey(pair, new Uint8Array(data.blob), data.context);
      await installEpoch(data, key);
    } catch (e) {
      self.postMessage({ type: 'keyed', epoch: data.epoch, error: String(e) });
    }
  }
  if (data.type === 'stats') self.postMessage({ type: 'stats', stats: { ...stats, kids: stats.kids.map(String) } });
};

function note(kid) {
  const k = String(kid);
  if (!stats.kids.includes(k)) stats.kids.push(k);
}

// Every encoded frame of one sender or receiver, from `readable` to `writable`.
function pipe(readable, writable, direction, codec) {
  const c = codec === 'opus' ? CODECS.opus : CODECS.vp8;
  readable.pipeThrough(new TransformStream({
    async transform(frame, out) {
      const data = new Uint8Array(frame.data);
      const started = performance.now();
      if (clear) { out.enqueue(frame); return; }
      try {
        if (!frames) { stats.noKey++; return; } // nothing leaves unencrypted, nothing undecryptable reaches the decoder
        if (direction === 'send') {
          const sealed = await frames.encrypt(c, data);
          frame.data = sealed.buffer.slice(sealed.byteOffset, sealed.byteOffset + sealed.byteLength);
          stats.encrypted++;
          stats.encryptMs += performance.now() - started;
        } else {
          const opened = await frames.decrypt(c, data);
          frame.data = opened.buffer.slice(opened.byteOffset, opened.byteOffset + opened.byteLength);
          stats.decrypted++;
          stats.decryptMs += performance.now() - started;
        }
        out.enqueue(frame);
      } catch (e) {
        stats.failed++;
        stats.lastError = `${direction}: ${e}`;
        if (/no (such )?key/.test(String(e))) stats.noKey++;
      }
      if (direction === 'recv') {
        const h = decodeHeader(data.subarray(clearPrefix(c, data)));
        if (h) note(h.kid);
      }
    },
  })).pipeTo(writable);
}

self.onrtctransform = ({ transformer }) => {
  const { direction, codec } = transformer.options;
  pipe(transformer.readable, transformer.writable, direction, codec);
};

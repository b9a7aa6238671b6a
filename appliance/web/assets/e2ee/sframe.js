// SFrame (RFC 9605) for the pages' frame-encryption worker, the same frame format as the Rust crate vbank-sframe
// (hsm/sframe): prefix ‖ SFrame header ‖ ciphertext ‖ tag, the codec's prefix left in clear (VP8 10 bytes on a
// keyframe, 3 otherwise; Opus 1) and authenticated as metadata. The AES-GCM suites run on WebCrypto; the 国密 suite
// (SM4-GCM with HKDF-SM3, 0xF001), which WebCrypto lacks, runs in vbank-sframe compiled to WebAssembly
// (hsm/sframe-wasm). Works in a worker, a page, and Node (for the cross-checks in tests/browser/sframe.test.mjs).

export const SUITES = { 'aes-128-gcm': 0x0004, 'aes-256-gcm': 0x0005, 'sm4-gcm': 0xf001 };
const HASH = { 0x0004: 'SHA-256', 0x0005: 'SHA-512' };
const KEY_BITS = { 0x0004: 128, 0x0005: 256 };
export const CODECS = { vp8: 0, opus: 1 };
const TAG = 16;
const enc = new TextEncoder();

/** How many leading bytes of `frame` stay in clear for `codec` (`clear_prefix` in hsm/sframe): one — VP8's first
 * frame-tag byte (the keyframe flag the SFU reads; start code and size are encrypted, so a keyless decoder rejects
 * every frame), Opus's TOC byte. */
export function clearPrefix(codec, frame) {
  return Math.min(codec === CODECS.vp8 || codec === CODECS.opus ? 1 : 0, frame.length);
}

function beBytes(v, n) {
  const out = new Uint8Array(n);
  for (let i = n - 1; i >= 0; i--) { out[i] = Number(v & 0xffn); v >>= 8n; }
  return out;
}

function minLen(v) {
  let n = 1;
  while (n < 8 && v >= 1n << BigInt(8 * n)) n++;
  return n;
}

/** The SFrame header for key id `kid` and counter `ctr` (BigInts). */
export function encodeHeader(kid, ctr) {
  const parts = [];
  const nib = (v) => {
    if (v < 8n) return Number(v);
    const n = minLen(v);
    parts.push(beBytes(v, n));
    return 0x8 | (n - 1);
  };
  const k = nib(kid);
  const c = nib(ctr);
  const out = new Uint8Array(1 + parts.reduce((s, p) => s + p.length, 0));
  out[0] = (k << 4) | c;
  let at = 1;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

/** Parse a header at the start of `b`: { kid, ctr, length } or null. */
export function decodeHeader(b) {
  if (b.length < 1) return null;
  let at = 1;
  const take = (nibble) => {
    if ((nibble & 0x8) === 0) return BigInt(nibble);
    const n = (nibble & 0x7) + 1;
    if (b.length < at + n) return null;
    let v = 0n;
    for (let i = 0; i < n; i++) v = (v << 8n) | BigInt(b[at + i]);
    at += n;
    return v;
  };
  const kid = take(b[0] >> 4);
  if (kid === null) return null;
  const ctr = take(b[0] & 0xf);
  if (ctr === null) return null;
  return { kid, ctr, length: at };
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

/** The AEAD key (a non-extractable CryptoKey) and nonce salt for `kid` under `baseKey`, AES suites. */
export async function deriveKey(suite, baseKey, kid) {
  const hash = HASH[suite];
  if (!hash) throw new Error(`suite ${suite} is not an AES-GCM suite`);
  const ikm = await crypto.subtle.importKey('raw', baseKey, 'HKDF', false, ['deriveBits', 'deriveKey']);
  const label = (what) => concat(enc.encode(`SFrame 1.0 Secret ${what} `), beBytes(kid, 8), beBytes(BigInt(suite), 2));
  const params = (what) => ({ name: 'HKDF', hash, salt: new Uint8Array(0), info: label(what) });
  const key = await crypto.subtle.deriveKey(params('key'), ikm, { name: 'AES-GCM', length: KEY_BITS[suite] }, false, ['encrypt', 'decrypt']);
  const salt = new Uint8Array(await crypto.subtle.deriveBits(params('salt'), ikm, 96));
  return { key, salt };
}

function nonce(salt, ctr) {
  const n = salt.slice();
  const c = beBytes(ctr, 8);
  for (let i = 0; i < 8; i++) n[4 + i] ^= c[i];
  return n;
}

/** RFC 9605 protect: header ‖ AEAD(pt) with aad = header ‖ metadata. */
export async function protect(keyed, kid, ctr, metadata, pt) {
  const header = encodeHeader(kid, ctr);
  const ct = await crypto.subtle.encrypt(
    { name: 'AES-GCM', iv: nonce(keyed.salt, ctr), additionalData: concat(header, metadata), tagLength: 128 },
    keyed.key, pt);
  return concat(header, new Uint8Array(ct));
}

/** Frame encryption on WebCrypto, for the AES-GCM suites. */
export class WebCryptoFrames {
  constructor(suite) { this.suite = suite; this.keys = new Map(); this.sender = null; }

  /** Send under `baseKey` as key id `kid` (a BigInt); the counter starts at 0. */
  async setSender(kid, baseKey) { this.sender = { kid, ctr: 0n, keyed: await deriveKey(this.suite, baseKey, kid) }; }

  /** Receive frames under key id `kid`. */
  async addKey(kid, baseKey) { this.keys.set(kid, await deriveKey(this.suite, baseKey, kid)); }

  /** Drop receive keys older than `kid`. */
  retireBefore(kid) { for (const k of this.keys.keys()) if (k < kid) this.keys.delete(k); }

  async encrypt(codec, frame) {
    const s = this.sender;
    if (!s) throw new Error('no sending key yet');
    const ctr = s.ctr++;
    const n = clearPrefix(codec, frame);
    const prefix = frame.subarray(0, n);
    return concat(prefix, await protect(s.keyed, s.kid, ctr, prefix, frame.subarray(n)));
  }

  async decrypt(codec, frame) {
    const n = clearPrefix(codec, frame);
    const prefix = frame.subarray(0, n);
    const sealed = frame.subarray(n);
    const h = decodeHeader(sealed);
    if (!h || sealed.length < h.length + TAG) throw new Error('malformed frame');
    const keyed = this.keys.get(h.kid);
    if (!keyed) throw new Error(`no key ${h.kid} is held`);
    const pt = await crypto.subtle.decrypt(
      { name: 'AES-GCM', iv: nonce(keyed.salt, h.ctr), additionalData: concat(sealed.subarray(0, h.length), prefix), tagLength: 128 },
      keyed.key, sealed.subarray(h.length));
    return concat(prefix, new Uint8Array(pt));
  }
}

const CODES = { '-1': 'malformed frame', '-2': 'no such key is held', '-3': 'the frame does not authenticate', '-4': 'bad key or suite', '-5': 'counter used up', '-6': 'bad handle or codec' };

/** Frame encryption in vbank-sframe compiled to WebAssembly (any suite; the only one for SM4-GCM). */
export class WasmFrames {
  /** `module`: a compiled WebAssembly.Module of hsm/sframe-wasm. */
  static async load(module, suite) {
    const instance = await WebAssembly.instantiate(module, {});
    return new WasmFrames(instance.exports, suite);
  }

  constructor(x, suite) { this.x = x; this.suite = suite; this.handle = x.sframe_context(); }

  #call(f, bytes, ...args) {
    const p = this.x.sframe_alloc(bytes.length);
    new Uint8Array(this.x.memory.buffer, p, bytes.length).set(bytes);
    try {
      const rc = f(...args, p, bytes.length);
      if (rc !== 0) throw new Error(CODES[rc] ?? `error ${rc}`);
    } finally {
      this.x.sframe_free(p, bytes.length);
    }
  }

  #out() {
    const p = this.x.sframe_out_ptr(this.handle);
    return new Uint8Array(this.x.memory.buffer, p, this.x.sframe_out_len(this.handle)).slice();
  }

  setSender(kid, baseKey) { this.#call(this.x.sframe_set_sender, baseKey, this.handle, this.suite, kid); }
  addKey(kid, baseKey) { this.#call(this.x.sframe_add_key, baseKey, this.handle, this.suite, kid); }
  retireBefore(kid) { this.x.sframe_retire_before(this.handle, kid); }
  encrypt(codec, frame) { this.#call(this.x.sframe_encrypt, frame, this.handle, codec); return this.#out(); }
  decrypt(codec, frame) { this.#call(this.x.sframe_decrypt, frame, this.handle, codec); return this.#out(); }
  close() { this.x.sframe_drop(this.handle); }
}

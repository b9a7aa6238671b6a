// The pages' frame encryption (appliance/web/assets/e2ee/sframe.js) against RFC 9605's published vectors and against
// the Rust crate the recorder will use (hsm/sframe, here compiled to WebAssembly as the pages load it): what one
// encrypts, the other opens; an altered frame or a missing key opens in neither. Runs in Node (WebCrypto, WebAssembly).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { CODECS, SUITES, WasmFrames, WebCryptoFrames, decodeHeader, deriveKey, encodeHeader, protect } from '../../appliance/web/assets/e2ee/sframe.js';

const hex = (s) => Uint8Array.from(s.match(/../g).map((b) => parseInt(b, 16)));
const toHex = (b) => Buffer.from(b).toString('hex');
const wasm = () => {
  const path = process.env.VBANK_SFRAME_WASM;
  assert.ok(path, 'VBANK_SFRAME_WASM names the built module (tests/run.sh builds it)');
  return new WebAssembly.Module(readFileSync(path));
};

test('RFC 9605 test vectors on WebCrypto (AES_128_GCM_SHA256_128, AES_256_GCM_SHA512_128)', async () => {
  const vectors = [
    [SUITES['aes-128-gcm'], '75234edefe07819026751816', '9901234567b7412c2513a1b66dbb48841bbaf17f598751176ad847681a69c6d0b091c07018ce4adb34eb'],
    [SUITES['aes-256-gcm'], '84991c167b8cd23c93708ec7', '990123456794f509d36e9beacb0e261d99c7d1e972f1fed787d4049f17ca21353c1cc24d56ceabced279'],
  ];
  for (const [suite, salt, ct] of vectors) {
    const keyed = await deriveKey(suite, hex('000102030405060708090a0b0c0d0e0f'), 0x123n);
    assert.equal(toHex(keyed.salt), salt);
    const out = await protect(keyed, 0x123n, 0x4567n, hex('4945544620534672616d65205747'), hex('64726166742d696574662d736672616d652d656e63'));
    assert.equal(toHex(out), ct);
  }
  for (const [kid, ctr] of [[0n, 0n], [7n, 8n], [0x123n, 0x4567n], [(1n << 64n) - 1n, 1n]]) {
    const h = decodeHeader(encodeHeader(kid, ctr));
    assert.deepEqual([h.kid, h.ctr], [kid, ctr]);
  }
});

function vp8Keyframe() {
  const f = new Uint8Array(300);
  f.set([0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01]);
  for (let i = 10; i < f.length; i++) f[i] = (i * 7) & 0xff;
  return f;
}

test('WebCrypto and the Rust crate (WebAssembly) open each other\'s frames; alterations and unknown keys fail', async () => {
  const module = wasm();
  const key = new Uint8Array(32).fill(0x42);
  for (const name of ['aes-128-gcm', 'aes-256-gcm']) {
    const suite = SUITES[name];
    const js = new WebCryptoFrames(suite);
    await js.setSender(3n, key);
    await js.addKey(3n, key);
    const rust = await WasmFrames.load(module, suite);
    rust.setSender(3n, key);
    rust.addKey(3n, key);
    const frame = vp8Keyframe();
    const fromJs = await js.encrypt(CODECS.vp8, frame);
    assert.equal(fromJs[0], frame[0], 'the keyframe flag stays in clear');
    assert.notDeepEqual(fromJs.subarray(1, 10), frame.subarray(1, 10), 'the start code and size do not');
    assert.deepEqual(rust.decrypt(CODECS.vp8, fromJs), frame, `${name}: Rust opens WebCrypto's frame`);
    const fromRust = rust.encrypt(CODECS.opus, Uint8Array.of(0xfc, 1, 2, 3));
    assert.deepEqual(await js.decrypt(CODECS.opus, fromRust), Uint8Array.of(0xfc, 1, 2, 3), `${name}: WebCrypto opens Rust's`);
    const bad = fromJs.slice();
    bad[bad.length - 1] ^= 1;
    assert.throws(() => rust.decrypt(CODECS.vp8, bad), /authenticate/);
    await assert.rejects(js.decrypt(CODECS.vp8, bad));
    const prefixChanged = fromJs.slice();
    prefixChanged[0] ^= 0x10;
    await assert.rejects(js.decrypt(CODECS.vp8, prefixChanged), 'the clear prefix is authenticated');
    const stranger = await WasmFrames.load(module, suite);
    assert.throws(() => stranger.decrypt(CODECS.vp8, fromJs), /no such key/);
    rust.close();
    stranger.close();
  }
});

test('SM4-GCM (国密 suite 0xF001) in WebAssembly: round trip, key rotation by key id', async () => {
  const module = wasm();
  const [a, b] = [await WasmFrames.load(module, SUITES['sm4-gcm']), await WasmFrames.load(module, SUITES['sm4-gcm'])];
  const k1 = new Uint8Array(16).fill(1);
  const k2 = new Uint8Array(16).fill(2);
  a.setSender(1n, k1);
  b.addKey(1n, k1);
  const f1 = a.encrypt(CODECS.vp8, vp8Keyframe());
  assert.equal(decodeHeader(f1.subarray(1)).kid, 1n);
  assert.deepEqual(b.decrypt(CODECS.vp8, f1), vp8Keyframe());
  a.setSender(2n, k2); // someone left: a new key, a new key id
  const f2 = a.encrypt(CODECS.opus, Uint8Array.of(0xfc, 9));
  assert.equal(decodeHeader(f2.subarray(1)).kid, 2n);
  assert.throws(() => b.decrypt(CODECS.opus, f2), /no such key/, 'not before the new key arrives');
  b.addKey(2n, k2);
  b.retireBefore(2n);
  assert.deepEqual(b.decrypt(CODECS.opus, f2), Uint8Array.of(0xfc, 9));
  assert.throws(() => b.decrypt(CODECS.vp8, f1), /no such key/, 'the old key is gone');
});

test('the page opens a media key keyd wrapped to it (vector from hsm/crypto key_transport), and only that one', async () => {
  const { unwrapMediaKey, pageKeyPair } = await import('../../appliance/web/assets/e2ee/keys.js');
  // The page's key: d = 0x11 × 32 (the Rust test's), as a JWK so WebCrypto can hold it as a page would.
  const pub = hex('040217e617f0b6443928278f96999e69a23a4f2c152bdf6d6cdf66e5b80282d4ed194a7debcb97712d2dda3ca85aa8765a56f45fc758599652f2897c65306e5794');
  const b64u = (b) => Buffer.from(b).toString('base64url');
  const jwk = { kty: 'EC', crv: 'P-256', d: b64u(new Uint8Array(32).fill(0x11)), x: b64u(pub.subarray(1, 33)), y: b64u(pub.subarray(33)) };
  const privateKey = await crypto.subtle.importKey('jwk', jwk, { name: 'ECDH', namedCurve: 'P-256' }, false, ['deriveBits']);
  const pair = { privateKey, publicKey: pub };
  const blob = hex('040a72831e9f48983d7f119f808a97627eebce27aff51540ef139b4949ea5f78f20995a26547f2af27cc3b8a626dcbcb27b488eca972929d4bdfb9a8e91bffc4eef1155336e08d03edbf9efc93100f8d3e459c610a6524397d56be4eb18830b4ee1edbbc4bedb919908d48a1d90b3f49ee');
  assert.deepEqual(await unwrapMediaKey(pair, blob, 'media:call-1:2'), new Uint8Array(32).fill(7));
  await assert.rejects(unwrapMediaKey(pair, blob, 'media:call-1:3'), 'bound to its epoch');
  await assert.rejects(unwrapMediaKey(await pageKeyPair(), blob, 'media:call-1:2'), 'another page cannot');
  const fresh = await pageKeyPair();
  assert.equal(fresh.publicKey.length, 65);
  await assert.rejects(crypto.subtle.exportKey('pkcs8', fresh.privateKey), 'the private half is not extractable');
});

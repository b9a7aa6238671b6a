// The page's end of the media-key transport (vbank-media-key-v1, hsm/crypto/src/key_transport.rs): the worker
// generates a P-256 key pair whose private half is non-extractable, hands the public half to the gateway with its
// join, and opens the call key keyd encrypted to it — ECDH with keyd's one-time key, HKDF-SHA256 (salt: both public
// keys; info: the label and the context), AES-256-GCM with the context as associated data. The gateway relays the
// result and never holds the key.

const enc = new TextEncoder();
const POINT = 65;

/** A key pair for one call: { privateKey (non-extractable), publicKey: Uint8Array (SEC1 uncompressed, 65 bytes) }. */
export async function pageKeyPair() {
  const pair = await crypto.subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, false, ['deriveBits']);
  return { privateKey: pair.privateKey, publicKey: new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey)) };
}

/** Open a media key keyd wrapped to `pair` for `context` (e.g. `media:<call>:<epoch>`): the key's bytes. */
export async function unwrapMediaKey(pair, blob, context) {
  if (blob.length < POINT + 16) throw new Error('the wrapped key is too short');
  const senderBytes = blob.subarray(0, POINT);
  const sender = await crypto.subtle.importKey('raw', senderBytes, { name: 'ECDH', namedCurve: 'P-256' }, false, []);
  const shared = await crypto.subtle.deriveBits({ name: 'ECDH', public: sender }, pair.privateKey, 256);
  const ikm = await crypto.subtle.importKey('raw', shared, 'HKDF', false, ['deriveKey']);
  const info = new Uint8Array([...enc.encode('vbank media key v1'), ...enc.encode(context)]);
  const salt = new Uint8Array([...senderBytes, ...pair.publicKey]);
  const kek = await crypto.subtle.deriveKey({ name: 'HKDF', hash: 'SHA-256', salt, info }, ikm,
    { name: 'AES-GCM', length: 256 }, false, ['decrypt']);
  const key = await crypto.subtle.decrypt({ name: 'AES-GCM', iv: new Uint8Array(12), additionalData: enc.encode(context) },
    kek, blob.subarray(POINT));
  return new Uint8Array(key);
}

//! RFC 9605's published test vectors (Appendix C, `sframe-wg/sframe` test-vectors) and the frame format.

use super::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

const BASE_KEY: &str = "000102030405060708090a0b0c0d0e0f";
const METADATA: &str = "4945544620534672616d65205747";
const PT: &str = "64726166742d696574662d736672616d652d656e63";

#[test]
fn the_rfcs_test_vectors_for_the_aes_gcm_suites() {
    for (suite, key, salt, ct) in [
        (
            Suite::Aes128GcmSha256,
            "d34f547f4ca4f9a7447006fe7fcbf768",
            "75234edefe07819026751816",
            "9901234567b7412c2513a1b66dbb48841bbaf17f598751176ad847681a69c6d0b091c07018ce4adb34eb",
        ),
        (
            Suite::Aes256GcmSha512,
            "d3e27b0d4a5ae9e55df01a70e6d4d28d969b246e2936f4b7a5d9b494da6b9633",
            "84991c167b8cd23c93708ec7",
            "990123456794f509d36e9beacb0e261d99c7d1e972f1fed787d4049f17ca21353c1cc24d56ceabced279",
        ),
    ] {
        let (k, s) = suite.derive(&hex(BASE_KEY), 0x123);
        assert_eq!((k.as_slice(), s.as_slice()), (hex(key).as_slice(), hex(salt).as_slice()), "{suite:?}");
        let out = protect(suite, &hex(BASE_KEY), 0x123, 0x4567, &hex(METADATA), &hex(PT)).unwrap();
        assert_eq!(out, hex(ct), "{suite:?}");
    }
    assert_eq!(
        suite::nonce(&hex("75234edefe07819026751816").try_into().unwrap(), 0x4567).to_vec(),
        hex("75234edefe07819026755d71")
    );
}

fn vp8_keyframe() -> Vec<u8> {
    // Frame tag with the keyframe bit clear, start code, 640×480, then payload.
    let mut f = vec![0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01];
    f.extend((0..200u32).map(|i| (i * 7) as u8));
    f
}

#[test]
fn every_suite_round_trips_with_the_codec_prefix_in_clear() {
    for suite in [Suite::Aes128GcmSha256, Suite::Aes256GcmSha512, Suite::Sm4GcmSm3] {
        let key = vec![0x42u8; 32];
        let mut tx = Sender::new(suite, 3, &key);
        let mut rx = Receiver::new();
        rx.add_key(suite, 3, &key);
        let frame = vp8_keyframe();
        let sealed = tx.encrypt(Codec::Vp8, &frame).unwrap();
        assert_eq!(sealed[0], frame[0], "the VP8 keyframe flag stays readable for the SFU");
        assert_ne!(&sealed[2..40], &frame[1..39], "the start code, size and picture do not");
        assert_eq!(rx.decrypt(Codec::Vp8, &sealed).unwrap().0, frame, "{suite:?}");
        let delta = [0x51u8, 0x01, 0x02, 9, 9, 9, 9];
        let sealed = tx.encrypt(Codec::Vp8, &delta).unwrap();
        assert_eq!(sealed[0], delta[0]);
        let (opened, h) = rx.decrypt(Codec::Vp8, &sealed).unwrap();
        assert_eq!((opened.as_slice(), h), (&delta[..], Header { kid: 3, ctr: 1 }));
        let opus = [0xfcu8, 1, 2, 3];
        let sealed = tx.encrypt(Codec::Opus, &opus).unwrap();
        assert_eq!((sealed[0], rx.decrypt(Codec::Opus, &sealed).unwrap().0), (0xfc, opus.to_vec()));
    }
}

#[test]
fn altered_frames_unknown_keys_and_rotation() {
    let (old, new) = ([1u8; 32], [2u8; 32]);
    let mut tx = Sender::new(Suite::Aes256GcmSha512, 1, &old);
    let mut rx = Receiver::new();
    rx.add_key(Suite::Aes256GcmSha512, 1, &old);
    let sealed = tx.encrypt(Codec::Vp8, &vp8_keyframe()).unwrap();
    for at in [0, 5, 10, 12, sealed.len() - 1] {
        let mut bad = sealed.clone();
        bad[at] ^= 0x01;
        assert!(rx.decrypt(Codec::Vp8, &bad).is_err(), "a change at {at} (clear prefix included) is caught");
    }
    assert_eq!(rx.decrypt(Codec::Vp8, &sealed[..5]).unwrap_err(), SframeError::Malformed("shorter than a tag"));
    // A receiver without the key (a WHEP viewer, the gateway) gets nothing but the clear prefix.
    assert_eq!(Receiver::new().decrypt(Codec::Vp8, &sealed).unwrap_err(), SframeError::UnknownKey(1));
    // Rotation: frames under the new key id open once the new key is held; the old key can be retired.
    let mut tx2 = Sender::new(Suite::Aes256GcmSha512, 2, &new);
    let sealed2 = tx2.encrypt(Codec::Opus, &[0xfc, 9]).unwrap();
    assert_eq!(Receiver::peek(Codec::Opus, &sealed2).unwrap().kid, 2);
    assert_eq!(rx.decrypt(Codec::Opus, &sealed2).unwrap_err(), SframeError::UnknownKey(2));
    rx.add_key(Suite::Aes256GcmSha512, 2, &new);
    rx.retire_before(2);
    assert!(rx.decrypt(Codec::Opus, &sealed2).is_ok());
    assert_eq!(rx.decrypt(Codec::Vp8, &sealed).unwrap_err(), SframeError::UnknownKey(1));
    // The same key under another suite does not open it.
    let mut sm4 = Receiver::new();
    sm4.add_key(Suite::Sm4GcmSm3, 2, &new[..16]);
    assert!(sm4.decrypt(Codec::Opus, &sealed2).is_err());
}

//! Cross-checks against the `openssl` command (Debian's OpenSSL 3, which has SM2, SM3 and SM4 but not SM4-GCM):
//! the same bytes in, the same bytes out, and signatures accepted in both directions.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use vbank_crypto::hash::sm3;
use vbank_crypto::sm2sig::{DEFAULT_ID, Sm2PrivateKey, Sm2PublicKey};
use vbank_crypto::{SecretBytes, from_hex, random, to_hex};

fn openssl(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl CLI (Debian openssl)");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn sm3_matches_openssl() {
    for len in [0usize, 3, 64, 1000, 65_537] {
        let mut data = vec![0u8; len];
        random(&mut data).unwrap();
        let theirs = String::from_utf8(openssl(&["dgst", "-sm3", "-r"], &data)).unwrap();
        assert_eq!(theirs.split_whitespace().next().unwrap(), to_hex(&sm3(&data)), "len {len}");
    }
}

#[test]
fn sm4_block_matches_openssl_and_the_standard() {
    use sm4::cipher::{BlockCipherEncrypt, KeyInit};
    // GB/T 32907 Annex A example 1: key = plaintext = 0123456789abcdeffedcba9876543210.
    let key = from_hex("0123456789abcdeffedcba9876543210").unwrap();
    let cipher = sm4::Sm4::new_from_slice(&key).unwrap();
    let mut block = sm4::cipher::Array::try_from(&key[..]).unwrap();
    cipher.encrypt_block(&mut block);
    assert_eq!(to_hex(&block), "681edf34d206965e86b3e94f536e4246");
    let mut data = vec![0u8; 64];
    random(&mut data).unwrap();
    let theirs = openssl(&["enc", "-sm4-ecb", "-nopad", "-K", &to_hex(&key)], &data);
    let mut ours = Vec::new();
    for chunk in data.chunks(16) {
        let mut b = sm4::cipher::Array::try_from(chunk).unwrap();
        cipher.encrypt_block(&mut b);
        ours.extend_from_slice(&b);
    }
    assert_eq!(ours, theirs);
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.display().to_string()
}

#[test]
fn openssl_verifies_our_sm2_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let key = Sm2PrivateKey::generate().unwrap();
    let msg = b"vbank evidence manifest";
    let sig = key.sign_der(DEFAULT_ID, msg).unwrap();
    let pubf = write(dir.path(), "pub.pem", key.public_key().to_pem().as_bytes());
    let sigf = write(dir.path(), "sig.der", &sig);
    let out = openssl(
        &[
            "pkeyutl",
            "-verify",
            "-rawin",
            "-digest",
            "sm3",
            "-pkeyopt",
            &format!("distid:{DEFAULT_ID}"),
            "-pubin",
            "-inkey",
            &pubf,
            "-sigfile",
            &sigf,
        ],
        msg,
    );
    assert!(String::from_utf8_lossy(&out).contains("Signature Verified Successfully"));
}

#[test]
fn we_verify_openssl_sm2_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let keyf = dir.path().join("key.pem").display().to_string();
    openssl(&["genpkey", "-algorithm", "SM2", "-out", &keyf], b"");
    let pubpem = openssl(&["pkey", "-in", &keyf, "-pubout"], b"");
    let pk = Sm2PublicKey::from_pem(std::str::from_utf8(&pubpem).unwrap()).unwrap();
    let id = "teller-0042";
    let sig = openssl(
        &["pkeyutl", "-sign", "-rawin", "-digest", "sm3", "-pkeyopt", &format!("distid:{id}"), "-inkey", &keyf],
        b"approve destroy kek",
    );
    pk.verify(id, b"approve destroy kek", &sig).unwrap();
    assert!(pk.verify(DEFAULT_ID, b"approve destroy kek", &sig).is_err());
}

#[test]
fn sm2_encryption_interoperates_both_ways() {
    use vbank_crypto::sm2enc::{decrypt, encrypt};
    let dir = tempfile::tempdir().unwrap();
    // Ours → OpenSSL.
    let key = Sm2PrivateKey::generate().unwrap();
    let keyf = write(dir.path(), "key.pem", key.to_pkcs8_pem().unwrap().expose());
    let ct = encrypt(&key.public_key(), b"ID 110101199003078888").unwrap();
    let ctf = write(dir.path(), "ct.der", &ct);
    let pt = openssl(&["pkeyutl", "-decrypt", "-inkey", &keyf, "-in", &ctf], b"");
    assert_eq!(pt, b"ID 110101199003078888");
    // OpenSSL → ours.
    let pubf = write(dir.path(), "pub.pem", key.public_key().to_pem().as_bytes());
    let ct = openssl(&["pkeyutl", "-encrypt", "-pubin", "-inkey", &pubf], b"from openssl");
    assert_eq!(decrypt(&key, &ct).unwrap().expose(), b"from openssl");
}

#[test]
fn secret_bytes_do_not_leak_through_debug() {
    let s = SecretBytes::new(b"top secret".to_vec());
    assert!(!format!("{s:?}").contains("top"));
}

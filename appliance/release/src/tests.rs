use std::io::Read;

use super::*;

fn key() -> Sm2PrivateKey {
    Sm2PrivateKey::generate().unwrap()
}

fn files() -> Vec<File> {
    vec![
        File { path: "bin/vbank".into(), bytes: b"\x7fELF binary".to_vec(), executable: true },
        File { path: "units/vbank-gateway.service".into(), bytes: b"[Service]\n".to_vec(), executable: false },
        File { path: "runbooks/README.md".into(), bytes: b"# Runbooks\n".to_vec(), executable: false },
    ]
}

fn bundle(k: &Sm2PrivateKey) -> Vec<u8> {
    let mut out = Vec::new();
    build("1.2.3", files(), k, &mut out).unwrap();
    out
}

/// The entries of a bundle: (path, kind, bytes).
fn entries(b: &[u8]) -> Vec<(String, tar::EntryType, Vec<u8>)> {
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(b));
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes).unwrap();
            (e.path().unwrap().to_string_lossy().into_owned(), e.header().entry_type(), bytes)
        })
        .collect()
}

/// A bundle of `list`, written raw (no checks), as an attacker would.
fn pack(list: &[(String, tar::EntryType, Vec<u8>)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for (path, kind, bytes) in list {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_size(if *kind == tar::EntryType::Regular { bytes.len() as u64 } else { 0 });
        h.set_mode(0o644);
        if *kind == tar::EntryType::Symlink {
            h.set_link_name("/etc/shadow").unwrap();
        }
        // Raw name bytes, so paths the builder would refuse (`..`) can be written.
        let name = path.as_bytes();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        let data: &[u8] = if *kind == tar::EntryType::Regular { bytes } else { &[] };
        tar.append(&h, data).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

#[test]
fn a_bundle_verifies_under_its_key_and_lists_every_file() {
    let k = key();
    let v = verify(&bundle(&k)[..], &k.public_key()).unwrap();
    assert_eq!(v.top, "vbank-1.2.3");
    assert_eq!(v.files.keys().collect::<Vec<_>>(), ["bin/vbank", "runbooks/README.md", "units/vbank-gateway.service"]);
    assert_eq!(v.files["runbooks/README.md"], to_hex(&sha256(b"# Runbooks\n")));
}

#[test]
fn another_key_an_altered_file_an_extra_or_missing_file_are_refused() {
    let k = key();
    let good = bundle(&k);
    let pk = k.public_key();
    assert!(matches!(verify(&good[..], &key().public_key()), Err(ReleaseError::Signature)));

    let mut list = entries(&good);
    list.iter_mut().find(|e| e.0.ends_with("bin/vbank")).unwrap().2.push(0x90);
    assert!(matches!(verify(&pack(&list)[..], &pk), Err(ReleaseError::Digest(p)) if p == "bin/vbank"));

    let mut list = entries(&good);
    list.push(("vbank-1.2.3/bin/backdoor".into(), tar::EntryType::Regular, b"x".to_vec()));
    let e = verify(&pack(&list)[..], &pk).unwrap_err();
    assert!(e.to_string().contains("bin/backdoor is not listed"), "{e}");

    let list: Vec<_> = entries(&good).into_iter().filter(|e| !e.0.ends_with("README.md")).collect();
    assert!(verify(&pack(&list)[..], &pk).unwrap_err().to_string().contains("missing"));

    // A new SHA256SUMS without a new signature.
    let mut list = entries(&good);
    let sums = list.iter_mut().find(|e| e.0.ends_with("/SHA256SUMS")).unwrap();
    sums.2 = super::sums(&[("bin/vbank".to_string(), b"evil".to_vec())].into_iter().collect()).into_bytes();
    assert!(matches!(verify(&pack(&list)[..], &pk), Err(ReleaseError::Signature)));

    let list: Vec<_> = entries(&good).into_iter().filter(|e| !e.0.ends_with(".sig")).collect();
    assert!(matches!(verify(&pack(&list)[..], &pk), Err(ReleaseError::Signature)));
    assert!(matches!(verify(&b"not a tarball"[..], &pk), Err(ReleaseError::Format(_))));
}

#[test]
fn links_escapes_and_a_second_top_directory_are_refused() {
    let k = key();
    let good = bundle(&k);
    let pk = k.public_key();
    for bad in [
        ("vbank-1.2.3/bin/sh".to_string(), tar::EntryType::Symlink),
        ("vbank-1.2.3/../etc/cron.d/x".to_string(), tar::EntryType::Regular),
        ("other/bin/vbank".to_string(), tar::EntryType::Regular),
    ] {
        let mut list = entries(&good);
        list.push((bad.0.clone(), bad.1, b"x".to_vec()));
        assert!(matches!(verify(&pack(&list)[..], &pk), Err(ReleaseError::Entry(p)) if p == bad.0), "{bad:?}");
    }
    assert!(matches!(
        build("1", vec![File { path: "../x".into(), bytes: vec![], executable: false }], &k, Vec::new()),
        Err(ReleaseError::Entry(_))
    ));
    assert!(build("1 2", files(), &k, Vec::new()).is_err());
}

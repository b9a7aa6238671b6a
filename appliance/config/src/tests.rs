use super::*;

#[test]
fn empty_file_gives_defaults() {
    let (cfg, warnings) = parse("").unwrap();
    assert!(warnings.is_empty());
    assert_eq!(cfg.gateway.listen.port(), 8443);
    assert_eq!(cfg.tls.min_version, TlsVersion::V1_3);
    assert_eq!(cfg.store, StoreConfig::Redb { dir: "/var/lib/vbank/store".into() });
    assert_eq!(cfg.tls.service(Service::Keyd).cert, PathBuf::from("/etc/vbank/tls/keyd.crt"));
}

#[test]
fn every_error_is_reported_with_key_and_line() {
    let src = r#"[node]
name = "a"
dat_dir = "/x"

[gateway]
listen = "not-an-address"
admin_listen = "127.0.0.1:9101"

[log]
level = "loud"

[hsm]
pin = "123456"

[bogus]
x = 1
"#;
    let diags = parse(src).unwrap_err();
    let found: Vec<(String, Option<usize>)> = diags.iter().map(|d| (d.key.clone(), d.line)).collect();
    assert_eq!(
        found,
        vec![
            ("node.dat_dir".to_string(), Some(3)),
            ("gateway.listen".to_string(), Some(6)),
            ("log.level".to_string(), Some(10)),
            ("hsm.pin".to_string(), Some(13)),
            ("bogus".to_string(), Some(15)),
        ],
        "{diags:#?}"
    );
    assert!(diags[0].hint.contains("did you mean `data_dir`"), "{}", diags[0].hint);
    assert!(diags[1].hint.contains("IP and port"));
    assert!(diags[2].hint.contains("error, warn, info, debug"));
    assert!(!diags[3].message.contains("123456"), "a literal secret must never be echoed");
    assert!(diags[3].hint.contains("credential:NAME"));
}

#[test]
fn wrong_types_and_ranges() {
    let src = "[node]\ndev_mode = \"yes\"\n[store.postgres]\nport = 99999\n[gateway]\nlisten = 8443\n";
    let diags = parse(src).unwrap_err();
    let keys: Vec<&str> = diags.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(keys, ["node.dev_mode", "store.postgres.port", "gateway.listen"]);
    assert!(diags[0].message.contains("expected a boolean"));
    assert!(diags[1].message.contains("out of range"));
}

#[test]
fn syntax_error_has_a_line() {
    let diags = parse("[node]\nname = \"unterminated\n").unwrap_err();
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0].line, Some(2));
    assert!(diags[0].message.starts_with("not valid TOML"));
}

#[test]
fn section_given_as_value() {
    let diags = parse("gateway = 3\n").unwrap_err();
    assert_eq!(diags[0].key, "gateway");
    assert!(diags[0].message.contains("expected a table"));
}

#[test]
fn clashing_ports_are_refused() {
    let src = "[gateway]\nadmin_listen = \"127.0.0.1:9104\"\n";
    let diags = parse(src).unwrap_err();
    assert_eq!(diags[0].key, "keyd.admin_listen");
    assert!(diags[0].message.contains("gateway.admin_listen"));
}

#[test]
fn postgres_backend_and_relative_paths() {
    let src = "[store]\nbackend = \"postgres\"\n[store.postgres]\npassword = \"credential:db\"\n[tls]\ndir = \"tls\"\n";
    let diags = parse(src).unwrap_err();
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0].key, "tls.dir");
    let (cfg, _) = parse("[store]\nbackend = \"postgres\"\n[store.postgres]\npassword = \"credential:db\"\n").unwrap();
    match cfg.store {
        StoreConfig::Postgres(pg) => {
            assert_eq!(pg.password, Some(SecretRef::Credential("db".into())))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn check_reports_missing_files_with_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vbank.toml");
    std::fs::write(
        &path,
        "[tls]\ninternal_ca = \"/nonexistent/ca.crt\"\n[hsm]\nmodule = \"/nonexistent/p11.so\"\npin = \"file:/nonexistent/pin\"\n",
    )
    .unwrap();
    let diags = check(&path).unwrap();
    let ca = diags.iter().find(|d| d.key == "tls.internal_ca").unwrap();
    assert_eq!(ca.line, Some(2));
    let module = diags.iter().find(|d| d.key == "hsm.module").unwrap();
    assert_eq!(module.line, Some(4));
    assert!(module.hint.contains("PKCS#11"));
    let pin = diags.iter().find(|d| d.key == "hsm.pin").unwrap();
    assert_eq!(pin.severity, Severity::Error);
}

#[test]
fn ice_tcp_follows_the_media_address_and_can_be_turned_off() {
    let src = "[gateway]\nmedia_listen = \"0.0.0.0:10500\"\nmedia_advertise = \"10.1.2.3:40000\"\n";
    let (cfg, _) = parse(src).unwrap();
    assert_eq!(cfg.gateway.media_tcp_advertise, Some("10.1.2.3:10500".parse().unwrap()));
    let (cfg, _) = parse("[gateway]\nmedia_tcp = false\n").unwrap();
    assert_eq!(cfg.gateway.media_tcp_advertise, None);
    let diags = parse("[gateway]\nmedia_tcp_advertise = \"nowhere\"\n").unwrap_err();
    assert_eq!(diags[0].key, "gateway.media_tcp_advertise");
}

#[test]
fn the_node_participant_limit_has_a_default_and_a_range() {
    assert_eq!(parse("").unwrap().0.gateway.max_participants, 1000);
    assert_eq!(parse("").unwrap().0.gateway.recorder_backlog_s, 15);
    assert_eq!(parse("").unwrap().0.gateway.recorder_backlog_mb, 1024);
    assert_eq!(parse("[gateway]\nrecorder_backlog_s = 121\n").unwrap_err()[0].key, "gateway.recorder_backlog_s");
    assert_eq!(parse("[gateway]\nmax_participants = 40\n").unwrap().0.gateway.max_participants, 40);
    let diags = parse("[gateway]\nmax_participants = 0\n").unwrap_err();
    assert_eq!(diags[0].key, "gateway.max_participants");
}

#[test]
fn the_kyc_section_reads_its_vendor_masking_and_models_and_names_what_is_missing() {
    let (cfg, _) = parse(
        "[kyc]\nidentity = \"tencent\"\nmask_id_front = 3\nmask_id_back = 2\nmodels = \"/opt/models\"\n\
         [kyc.tencent]\nconnect = \"127.0.0.1:8479\"\nsecret_id = \"credential:tid\"\nsecret_key = \"credential:tkey\"\n",
    )
    .unwrap();
    assert_eq!((cfg.kyc.mask_id_front, cfg.kyc.mask_id_back), (3, 2));
    assert_eq!(cfg.kyc.models, PathBuf::from("/opt/models"));
    assert_eq!(cfg.kyc.tencent.connect, Some("127.0.0.1:8479".parse().unwrap()));
    assert_eq!(cfg.kyc.tencent.host, "faceid.tencentcloudapi.com");
    let (defaults, _) = parse("").unwrap();
    assert_eq!((defaults.kyc.identity.as_str(), defaults.kyc.mask_id_front, defaults.kyc.mask_id_back), ("off", 6, 4));

    let diags = parse("[kyc]\nidentity = \"tencent\"\nmask_id_front = 9\n").unwrap_err();
    let keys: Vec<&str> = diags.iter().map(|d| d.key.as_str()).collect();
    assert!(keys.contains(&"kyc.identity") && keys.contains(&"kyc.mask_id_front"), "{keys:?}");
    assert!(diags.iter().any(|d| d.hint.contains("secret_key")), "{diags:?}");

    // Per capability: a vendor, a fallback rule, and each vendor's own credential names.
    let (cfg, _) = parse(
        "[kyc]\nidentity = \"nciic\"\nidentity_fallback = \"alibaba\"\nocr = \"local+baidu\"\nface_compare = \"baidu\"\n\
         [kyc.nciic]\nhost = \"nciic.bank.example\"\nsbm = \"SBM-1\"\nlicense = \"credential:lic\"\n\
         [kyc.alibaba]\naccess_key_id = \"credential:ak\"\naccess_key_secret = \"credential:as\"\n\
         [kyc.baidu]\napi_key = \"credential:bk\"\nsecret_key = \"credential:bs\"\n",
    )
    .unwrap();
    assert_eq!((cfg.kyc.identity.as_str(), cfg.kyc.identity_fallback.as_str()), ("nciic", "alibaba"));
    assert_eq!((cfg.kyc.ocr.as_str(), cfg.kyc.face_compare.as_str()), ("local+baidu", "baidu"));
    assert_eq!((cfg.kyc.nciic.sbm.as_str(), cfg.kyc.nciic.business.as_str()), ("SBM-1", "开户"));
    assert_eq!(cfg.kyc.alibaba.host, "cloudauth.aliyuncs.com");
    let diags = parse("[kyc]\nocr = \"baidu\"\nidentity = \"nciic\"\n").unwrap_err();
    assert!(diags.iter().any(|d| d.key == "kyc.ocr" && d.hint.contains("api_key and secret_key")), "{diags:?}");
    assert!(diags.iter().any(|d| d.key == "kyc.identity" && d.message.contains("host and sbm")), "{diags:?}");
}

#[test]
fn e2ee_is_off_unless_a_business_type_or_direct_calls_ask_for_it() {
    let off = parse("").unwrap().0.e2ee;
    assert!(!off.covers("wealth") && !off.direct && off.suite == "aes-256-gcm");
    let on = parse("[e2ee]\nbusinesses = \"wealth, loan-signing\"\nsuite = \"sm4-gcm\"\n").unwrap().0.e2ee;
    assert!(on.covers("wealth") && on.covers("loan-signing") && !on.covers("corporate-account"));
    assert!(parse("[e2ee]\nbusinesses = \"*\"\n").unwrap().0.e2ee.covers("anything"));
    let diags = parse("[e2ee]\nsuite = \"des\"\n").unwrap_err();
    assert_eq!(diags[0].key, "e2ee.suite");
}

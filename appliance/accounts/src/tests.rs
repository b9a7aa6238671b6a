use super::*;

async fn accounts() -> (tempfile::TempDir, Accounts) {
    let dir = tempfile::tempdir().unwrap();
    let store = vbank_store::RedbStore::open(&dir.path().join("t.redb")).unwrap();
    (dir, Accounts::new(Arc::new(store)).unwrap())
}

fn pw(s: &str) -> Zeroizing<String> {
    Zeroizing::new(s.to_string())
}

fn wealth() -> BTreeSet<String> {
    BTreeSet::from(["wealth".to_string()])
}

#[tokio::test]
async fn a_login_checks_the_argon2id_hash_and_locks_after_five_failures() {
    let (_d, acc) = accounts().await;
    let a = acc.create("li.na", Role::Teller, wealth(), pw("Teller2026a")).await.unwrap();
    assert!(a.hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{}", a.hash);
    assert!(!a.hash.contains("Teller2026a"));
    assert_eq!(acc.login("li.na", pw("Teller2026a"), 1000).await.unwrap().businesses, wealth());
    assert!(matches!(acc.login("nobody", pw("Teller2026a"), 1000).await, Err(AccountError::BadCredentials)));
    for i in 0..4 {
        assert!(matches!(acc.login("li.na", pw("wrong-guess-1"), 1000 + i).await, Err(AccountError::BadCredentials)));
    }
    let locked = acc.login("li.na", pw("wrong-guess-1"), 1010).await;
    assert!(matches!(locked, Err(AccountError::Locked { until: 1910 })), "{locked:?}");
    // Locked: even the right password is refused until the lock ends, then works and clears the count.
    assert!(matches!(acc.login("li.na", pw("Teller2026a"), 1500).await, Err(AccountError::Locked { .. })));
    assert!(acc.login("li.na", pw("Teller2026a"), 1910).await.is_ok());
    // A supervisor unlocks early.
    for _ in 0..5 {
        let _ = acc.login("li.na", pw("nope-nope-1"), 2000).await;
    }
    assert!(matches!(acc.login("li.na", pw("Teller2026a"), 2001).await, Err(AccountError::Locked { .. })));
    acc.unlock("li.na").await.unwrap();
    assert!(acc.login("li.na", pw("Teller2026a"), 2002).await.is_ok());
}

#[tokio::test]
async fn names_passwords_permissions_and_disabling() {
    let (_d, acc) = accounts().await;
    assert!(matches!(acc.create("x", Role::Teller, wealth(), pw("short1")).await, Err(AccountError::Policy(_))));
    assert!(matches!(
        acc.create("bad name", Role::Teller, wealth(), pw("Teller2026a")).await,
        Err(AccountError::Policy(_))
    ));
    acc.create("wang", Role::Supervisor, BTreeSet::new(), pw("Supervise99x")).await.unwrap();
    assert!(matches!(
        acc.create("wang", Role::Teller, wealth(), pw("Another2026")).await,
        Err(AccountError::Exists(n)) if n == "wang"
    ));
    acc.create("li", Role::Teller, wealth(), pw("Teller2026a")).await.unwrap();
    let both = BTreeSet::from(["wealth".to_string(), "corporate-account".to_string()]);
    assert_eq!(acc.permit("li", both.clone()).await.unwrap().businesses, both);
    let names: Vec<String> = acc.list().await.unwrap().into_iter().map(|a| a.name).collect();
    assert_eq!(names, ["li", "wang"]);
    acc.set_disabled("li", true).await.unwrap();
    assert!(matches!(acc.login("li", pw("Teller2026a"), 1).await, Err(AccountError::Disabled)));
    acc.set_disabled("li", false).await.unwrap();
    acc.set_password("li", pw("NewPassword7")).await.unwrap();
    assert!(acc.login("li", pw("NewPassword7"), 1).await.is_ok());
    assert!(matches!(acc.permit("ghost", wealth()).await, Err(AccountError::NotFound(_))));
}

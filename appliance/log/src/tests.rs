use std::sync::{Arc, Mutex};

use super::*;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logger(dev: bool) -> (Logger, Buf) {
    let buf = Buf::default();
    let id = Identity { service: "gateway".into(), node: "n1".into(), dev };
    (Logger::to_writer(id, LevelFilter::Info, Box::new(buf.clone())), buf)
}

fn emit(l: &Logger, level: log::Level, msg: std::fmt::Arguments<'_>, kv: &[(&str, &str)]) {
    l.log(&Record::builder().args(msg).level(level).key_values(&kv).build());
}

#[test]
fn messages_and_fields_are_redacted() {
    let (l, buf) = logger(true);
    emit(
        &l,
        log::Level::Info,
        format_args!("customer 110101199003078888 rang from 13812345678"),
        &[("name", "张小三"), ("pin", "123456"), ("room", "r1")],
    );
    let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(out.contains("gateway@n1 [DEV] customer 110101********8888 rang from 138****5678"), "{out}");
    assert!(out.contains("name=张*三"), "{out}");
    assert!(out.contains("pin=<redacted>"), "{out}");
    assert!(out.contains("room=r1"), "{out}");
    assert!(!out.contains("123456") && !out.contains("199003078888"), "{out}");
}

#[test]
fn level_filter_applies() {
    let (l, buf) = logger(false);
    emit(&l, log::Level::Debug, format_args!("noise"), &[]);
    assert!(buf.0.lock().unwrap().is_empty());
}

#[test]
fn required_journald_fails_clearly_without_socket() {
    if std::path::Path::new("/run/systemd/journal/socket").exists() {
        return; // this host has a journal; the integration test covers the journald path
    }
    let id = Identity { service: "t".into(), node: "n".into(), dev: false };
    let err = Logger::new(id.clone(), LevelFilter::Info, Target::Journald).err().unwrap();
    assert!(err.to_string().contains("target = \"stderr\""), "{err}");
    assert!(!Logger::new(id, LevelFilter::Info, Target::Auto).unwrap().is_journald());
}

//! A whole store as one consistent value, and its file format (`vbank backup` keeps these files).
//!
//! The encoding is deterministic: entries are in byte order of (table, key) and (stream, sequence), so two exports of
//! the same state are byte-identical whichever backend produced them, and a backup's round trip can be checked by
//! comparing bytes.
//!
//! Format (all integers big-endian):
//! ```text
//! "VBSTORE1\n" u32 schema_version
//! repeated: 0x01 u16 table_len table u32 key_len key u64 version u32 value_len value     (a table entry)
//!           0x02 u32 stream_len stream u64 seq u32 value_len value                       (a stream entry)
//! 0x00 u64 table_entries u64 stream_entries                                               (the end, with counts)
//! ```
//! The end record makes a truncated file detectable.

use crate::StoreError;

const MAGIC: &[u8] = b"VBSTORE1\n";

/// One table entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    /// Table name ([`crate::Table::as_str`], or a table this binary does not know, kept as found).
    pub table: String,
    /// Key.
    pub key: String,
    /// Version.
    pub version: u64,
    /// Value.
    pub value: Vec<u8>,
}

/// One stream entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    /// Stream name.
    pub stream: String,
    /// Sequence number.
    pub seq: u64,
    /// Value.
    pub value: Vec<u8>,
}

/// Everything a store holds at one instant.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Schema version of the store it came from.
    pub schema_version: u32,
    /// Table entries, ordered by (table, key) bytes.
    pub kv: Vec<KvEntry>,
    /// Stream entries, ordered by (stream bytes, seq).
    pub streams: Vec<StreamEntry>,
}

fn invalid(why: impl Into<String>) -> StoreError {
    StoreError::Invalid { what: "store export", why: why.into() }
}

impl Snapshot {
    /// Put entries in the canonical order (backends already return them so; this makes it a guarantee).
    pub fn canonicalize(&mut self) {
        self.kv.sort_by(|a, b| (a.table.as_bytes(), a.key.as_bytes()).cmp(&(b.table.as_bytes(), b.key.as_bytes())));
        self.streams.sort_by(|a, b| (a.stream.as_bytes(), a.seq).cmp(&(b.stream.as_bytes(), b.seq)));
    }

    /// Several stores' exports as one (a single node's per-service files going into a cluster's one database).
    /// Refused when they disagree on the schema or hold the same entry twice.
    pub fn merge(parts: Vec<Snapshot>) -> Result<Snapshot, StoreError> {
        let mut out = Snapshot::default();
        for (i, p) in parts.into_iter().enumerate() {
            if i > 0 && p.schema_version != out.schema_version {
                return Err(invalid("the exports have different schema versions"));
            }
            out.schema_version = p.schema_version;
            out.kv.extend(p.kv);
            out.streams.extend(p.streams);
        }
        out.canonicalize();
        if let Some(w) = out.kv.windows(2).find(|w| w[0].table == w[1].table && w[0].key == w[1].key) {
            return Err(invalid(format!("{}/{} is in more than one export", w[0].table, w[0].key)));
        }
        if let Some(w) = out.streams.windows(2).find(|w| w[0].stream == w[1].stream && w[0].seq == w[1].seq) {
            return Err(invalid(format!("stream {} entry {} is in more than one export", w[0].stream, w[0].seq)));
        }
        Ok(out)
    }

    /// The last sequence number of each stream, for restoring stream heads.
    pub fn stream_heads(&self) -> Vec<(&str, u64)> {
        let mut heads: Vec<(&str, u64)> = Vec::new();
        for e in &self.streams {
            match heads.last_mut() {
                Some((s, seq)) if *s == e.stream => *seq = (*seq).max(e.seq),
                _ => heads.push((&e.stream, e.seq)),
            }
        }
        heads
    }

    /// The file bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.kv.iter().map(|e| e.value.len() + 64).sum::<usize>());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.schema_version.to_be_bytes());
        for e in &self.kv {
            out.push(1);
            out.extend_from_slice(&(e.table.len() as u16).to_be_bytes());
            out.extend_from_slice(e.table.as_bytes());
            put_bytes(&mut out, e.key.as_bytes());
            out.extend_from_slice(&e.version.to_be_bytes());
            put_bytes(&mut out, &e.value);
        }
        for e in &self.streams {
            out.push(2);
            put_bytes(&mut out, e.stream.as_bytes());
            out.extend_from_slice(&e.seq.to_be_bytes());
            put_bytes(&mut out, &e.value);
        }
        out.push(0);
        out.extend_from_slice(&(self.kv.len() as u64).to_be_bytes());
        out.extend_from_slice(&(self.streams.len() as u64).to_be_bytes());
        out
    }

    /// Parse file bytes; refuses anything truncated, reordered or trailing.
    pub fn decode(bytes: &[u8]) -> Result<Snapshot, StoreError> {
        let mut r = Reader { b: bytes, at: 0 };
        if r.take(MAGIC.len())? != MAGIC {
            return Err(invalid("not a vbank store export (bad magic)"));
        }
        let mut s = Snapshot { schema_version: r.u32()?, ..Snapshot::default() };
        loop {
            match r.take(1)?[0] {
                1 => {
                    let n = u16::from_be_bytes(r.take(2)?.try_into().expect("2 bytes")) as usize;
                    let table = r.string(n)?;
                    let n = r.u32()? as usize;
                    let key = r.string(n)?;
                    let version = r.u64()?;
                    let n = r.u32()? as usize;
                    s.kv.push(KvEntry { table, key, version, value: r.take(n)?.to_vec() });
                }
                2 => {
                    let n = r.u32()? as usize;
                    let stream = r.string(n)?;
                    let seq = r.u64()?;
                    let n = r.u32()? as usize;
                    s.streams.push(StreamEntry { stream, seq, value: r.take(n)?.to_vec() });
                }
                0 => {
                    let (kv, st) = (r.u64()?, r.u64()?);
                    if kv != s.kv.len() as u64 || st != s.streams.len() as u64 {
                        return Err(invalid(format!(
                            "the end record counts {kv} table and {st} stream entries, the file holds {} and {}",
                            s.kv.len(),
                            s.streams.len()
                        )));
                    }
                    if r.at != bytes.len() {
                        return Err(invalid("bytes after the end record"));
                    }
                    let mut sorted = s.clone();
                    sorted.canonicalize();
                    if sorted != s {
                        return Err(invalid("entries are not in canonical order"));
                    }
                    return Ok(s);
                }
                t => return Err(invalid(format!("unknown record type {t} at byte {}", r.at - 1))),
            }
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len()).ok_or_else(|| {
            invalid(format!("truncated at byte {} (the file is incomplete: take it from the backup again)", self.at))
        })?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, StoreError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn string(&mut self, n: usize) -> Result<String, StoreError> {
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| invalid("a name that is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        let mut s = Snapshot {
            schema_version: 1,
            kv: vec![
                KvEntry { table: "calls".into(), key: "c1".into(), version: 3, value: b"x".to_vec() },
                KvEntry { table: "accounts".into(), key: "柜员".into(), version: 1, value: (0..=255).collect() },
            ],
            streams: vec![
                StreamEntry { stream: "audit".into(), seq: 2, value: b"b".to_vec() },
                StreamEntry { stream: "audit".into(), seq: 1, value: b"a".to_vec() },
                StreamEntry { stream: "call-events/r".into(), seq: 1, value: vec![] },
            ],
        };
        s.canonicalize();
        s
    }

    #[test]
    fn round_trips_and_is_deterministic() {
        let s = sample();
        let bytes = s.encode();
        assert_eq!(Snapshot::decode(&bytes).unwrap(), s);
        assert_eq!(Snapshot::decode(&bytes).unwrap().encode(), bytes);
        assert_eq!(s.stream_heads(), vec![("audit", 2), ("call-events/r", 1)]);
    }

    #[test]
    fn merges_disjoint_exports_and_refuses_overlaps() {
        let s = sample();
        let (mut a, mut b) = (s.clone(), s.clone());
        a.streams.clear();
        b.kv.clear();
        assert_eq!(Snapshot::merge(vec![b, a]).unwrap(), s);
        let e = Snapshot::merge(vec![s.clone(), s.clone()]).unwrap_err().to_string();
        assert!(e.contains("accounts/柜员 is in more than one export"), "{e}");
        let mut newer = s.clone();
        newer.schema_version = 2;
        assert!(Snapshot::merge(vec![s, newer]).is_err());
    }

    #[test]
    fn refuses_damage() {
        let bytes = sample().encode();
        for cut in [0, 5, 13, bytes.len() / 2, bytes.len() - 1] {
            let e = Snapshot::decode(&bytes[..cut]).unwrap_err().to_string();
            assert!(e.contains("truncated") || e.contains("magic"), "cut {cut}: {e}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(Snapshot::decode(&extra).unwrap_err().to_string().contains("after the end"));
        let mut bad = bytes.clone();
        bad[13] = 9;
        assert!(Snapshot::decode(&bad).unwrap_err().to_string().contains("unknown record type 9"));
        // Entries out of order are refused: an import must not depend on how a file was edited.
        let mut s = sample();
        s.kv.swap(0, 1);
        assert!(Snapshot::decode(&s.encode()).unwrap_err().to_string().contains("canonical order"));
    }
}

//! The segment file format, `vbank-segment/1` (all integers big-endian):
//!
//! ```text
//! segment := MAGIC (8) ‖ header_len u32 ‖ header (JSON) ‖ crc32(header) u32 ‖ record*
//! record  := body_len u32 ‖ body ‖ crc32(body_len ‖ body) u32
//! body    := kind u8 ‖ index u32 ‖ arrival_us u64 ‖ AEAD(key, nonce, aad, payload)
//! nonce   := track u32 ‖ segment u32 ‖ index u32            (unique under the recording's one key)
//! aad     := "vbank-rec/1" ‖ recording ‖ 0x00 ‖ track u32 ‖ segment u32 ‖ index u32 ‖ kind u8 ‖ arrival_us u64
//! ```
//!
//! A closed segment ends with an [`RecordKind::End`] record, so a segment cut short (or a tail cut off) is told apart
//! from a complete one. The CRC finds torn writes without the key; the AEAD tag proves, with it, that nothing was
//! changed or moved: a record copied into another place fails to open.

use serde::{Deserialize, Serialize};
use vbank_crypto::SecretBytes;
use vbank_crypto::aead::{self, AeadAlg};

use crate::RecorderError;

/// The first bytes of every segment.
pub const MAGIC: &[u8; 8] = b"VBSEG/1\n";

/// What a record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// One RTP packet as received (SRTP already removed by the SFU session).
    Rtp = 1,
    /// One RTCP packet (sender reports map RTP time to wall-clock time).
    Rtcp = 2,
    /// One call event as JSON (a join, a leave, a track's sender; later chat, documents, consent, KYC results).
    Event = 3,
    /// The segment's last record: nothing follows.
    End = 0xFF,
}

impl RecordKind {
    fn from_u8(b: u8) -> Option<RecordKind> {
        Some(match b {
            1 => RecordKind::Rtp,
            2 => RecordKind::Rtcp,
            3 => RecordKind::Event,
            0xFF => RecordKind::End,
            _ => return None,
        })
    }
}

/// A recording's data key, as keyd issued it. The plaintext key is zeroized when dropped.
#[derive(Debug)]
pub struct DataKey {
    /// keyd's id for it (to open it again later).
    pub id: String,
    /// The algorithm.
    pub alg: AeadAlg,
    /// The key itself.
    pub key: SecretBytes,
}

/// The header of a segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentHeader {
    /// Always `vbank-segment/1`.
    pub format: String,
    /// The recording (call) id.
    pub recording: String,
    /// The track's number within the recording (part of every nonce).
    pub track: u32,
    /// What the track is, e.g. `customer/camera`.
    pub label: String,
    /// `audio` or `video`.
    pub media: String,
    /// The segment's number within the track.
    pub segment: u32,
    /// The AEAD algorithm's name.
    pub alg: String,
    /// keyd's id of the recording's data key.
    pub key_id: String,
    /// When the segment was opened, Unix microseconds.
    pub opened_us: u64,
}

impl SegmentHeader {
    /// The header bytes that start a segment file.
    pub fn encode(&self) -> Vec<u8> {
        let json = serde_json::to_vec(self).expect("a header always serializes");
        let mut out = Vec::with_capacity(json.len() + 16);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(json.len() as u32).to_be_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(&crc32fast::hash(&json).to_be_bytes());
        out
    }

    /// Parse the header at the start of `file`; returns it and where the records begin.
    pub fn decode(file: &[u8]) -> Result<(SegmentHeader, usize), RecorderError> {
        let bad = |why: &str| RecorderError::Format(format!("not a vbank segment: {why}"));
        if file.get(..8) != Some(MAGIC.as_slice()) {
            return Err(bad("wrong magic"));
        }
        let len =
            u32::from_be_bytes(file.get(8..12).ok_or_else(|| bad("short"))?.try_into().expect("4 bytes")) as usize;
        let json = file.get(12..12 + len).ok_or_else(|| bad("header cut short"))?;
        let crc = file.get(12 + len..16 + len).ok_or_else(|| bad("header cut short"))?;
        if crc32fast::hash(json).to_be_bytes() != crc {
            return Err(bad("header CRC mismatch"));
        }
        let h: SegmentHeader = serde_json::from_slice(json).map_err(|e| bad(&e.to_string()))?;
        if h.format != "vbank-segment/1" {
            return Err(bad(&format!("format {:?}", h.format)));
        }
        Ok((h, 16 + len))
    }

    fn nonce(&self, index: u32) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[..4].copy_from_slice(&self.track.to_be_bytes());
        n[4..8].copy_from_slice(&self.segment.to_be_bytes());
        n[8..].copy_from_slice(&index.to_be_bytes());
        n
    }

    fn aad(&self, index: u32, kind: RecordKind, arrival_us: u64) -> Vec<u8> {
        let mut a = Vec::with_capacity(64);
        a.extend_from_slice(b"vbank-rec/1");
        a.extend_from_slice(self.recording.as_bytes());
        a.push(0);
        a.extend_from_slice(&self.track.to_be_bytes());
        a.extend_from_slice(&self.segment.to_be_bytes());
        a.extend_from_slice(&index.to_be_bytes());
        a.push(kind as u8);
        a.extend_from_slice(&arrival_us.to_be_bytes());
        a
    }

    /// Seal one record: the bytes to append.
    pub fn seal(
        &self,
        key: &DataKey,
        index: u32,
        kind: RecordKind,
        arrival_us: u64,
        payload: &[u8],
    ) -> Result<Vec<u8>, RecorderError> {
        let sealed =
            aead::seal(key.alg, key.key.expose(), &self.nonce(index), &self.aad(index, kind, arrival_us), payload)
                .map_err(|_| RecorderError::Crypto {
                    what: format!("track {} segment {}", self.track, self.segment),
                    index,
                })?;
        let body_len = 1 + 4 + 8 + sealed.len();
        let mut out = Vec::with_capacity(body_len + 8);
        out.extend_from_slice(&(body_len as u32).to_be_bytes());
        out.push(kind as u8);
        out.extend_from_slice(&index.to_be_bytes());
        out.extend_from_slice(&arrival_us.to_be_bytes());
        out.extend_from_slice(&sealed);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        Ok(out)
    }
}

/// One record as found in a segment, still sealed.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRecord<'a> {
    /// What it carries.
    pub kind: RecordKind,
    /// Its number within the segment.
    pub index: u32,
    /// When it arrived, Unix microseconds.
    pub arrival_us: u64,
    /// The AEAD output.
    pub sealed: &'a [u8],
}

impl RawRecord<'_> {
    /// Open the record with the recording's key.
    pub fn open(&self, header: &SegmentHeader, key: &DataKey) -> Result<SecretBytes, RecorderError> {
        aead::open(
            key.alg,
            key.key.expose(),
            &header.nonce(self.index),
            &header.aad(self.index, self.kind, self.arrival_us),
            self.sealed,
        )
        .map_err(|_| RecorderError::Crypto {
            what: format!("track {} segment {}", header.track, header.segment),
            index: self.index,
        })
    }
}

/// What a scan of a segment found.
#[derive(Debug, Clone, PartialEq)]
pub struct Scan<'a> {
    /// The header.
    pub header: SegmentHeader,
    /// Every record up to the first that is cut short or fails its CRC.
    pub records: Vec<RawRecord<'a>>,
    /// Bytes of header and valid records: the length a torn segment is cut back to.
    pub valid_len: usize,
    /// Whether the segment ends with its End record and nothing after it.
    pub closed: bool,
}

/// Read a segment's header and records without the key (CRC checks only), stopping at the first damaged record.
pub fn scan(file: &[u8]) -> Result<Scan<'_>, RecorderError> {
    let (header, mut at) = SegmentHeader::decode(file)?;
    let mut records = Vec::new();
    let mut closed = false;
    while let Some(len_bytes) = file.get(at..at + 4) {
        let body_len = u32::from_be_bytes(len_bytes.try_into().expect("4 bytes")) as usize;
        if body_len < 13 {
            break;
        }
        let Some(crc) = file.get(at + 4 + body_len..at + 8 + body_len) else { break };
        if crc32fast::hash(&file[at..at + 4 + body_len]).to_be_bytes() != crc {
            break;
        }
        let body = &file[at + 4..at + 4 + body_len];
        let Some(kind) = RecordKind::from_u8(body[0]) else { break };
        records.push(RawRecord {
            kind,
            index: u32::from_be_bytes(body[1..5].try_into().expect("4 bytes")),
            arrival_us: u64::from_be_bytes(body[5..13].try_into().expect("8 bytes")),
            sealed: &body[13..],
        });
        at += 8 + body_len;
        if kind == RecordKind::End {
            closed = true;
            break;
        }
    }
    closed &= at == file.len();
    Ok(Scan { header, records, valid_len: at, closed })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn key(alg: AeadAlg) -> DataKey {
        DataKey { id: "dek-test".into(), alg, key: SecretBytes::random(alg.key_len()).unwrap() }
    }

    pub fn header(segment: u32) -> SegmentHeader {
        SegmentHeader {
            format: "vbank-segment/1".into(),
            recording: "rec-1".into(),
            track: 2,
            label: "customer/camera".into(),
            media: "video".into(),
            segment,
            alg: "aes-256-gcm".into(),
            key_id: "dek-test".into(),
            opened_us: 1_700_000_000_000_000,
        }
    }

    fn segment(h: &SegmentHeader, k: &DataKey, n: u32, close: bool) -> Vec<u8> {
        let mut file = h.encode();
        for i in 0..n {
            file.extend(h.seal(k, i, RecordKind::Rtp, 1000 + u64::from(i), &[i as u8; 50]).unwrap());
        }
        if close {
            file.extend(h.seal(k, n, RecordKind::End, 9999, &[]).unwrap());
        }
        file
    }

    #[test]
    fn records_round_trip_under_both_algorithms() {
        for alg in [AeadAlg::Aes256Gcm, AeadAlg::Sm4Gcm] {
            let (h, k) = (header(0), key(alg));
            let file = segment(&h, &k, 5, true);
            let s = scan(&file).unwrap();
            assert!(s.closed);
            assert_eq!(s.valid_len, file.len());
            assert_eq!(s.records.len(), 6);
            assert_eq!(s.records[3].open(&h, &k).unwrap().expose(), &[3u8; 50]);
            assert_eq!(s.records[3].arrival_us, 1003);
            // The payload is not in the file in the clear.
            assert!(!file.windows(50).any(|w| w == [3u8; 50]));
        }
    }

    #[test]
    fn a_torn_tail_is_cut_back_to_the_last_whole_record() {
        let (h, k) = (header(0), key(AeadAlg::Aes256Gcm));
        let whole = segment(&h, &k, 4, false);
        let three = scan(&whole).unwrap().records[..3].iter().map(|r| 8 + 13 + r.sealed.len()).sum::<usize>();
        for cut in 1..40 {
            let torn = &whole[..whole.len() - cut];
            let s = scan(torn).unwrap();
            assert!(!s.closed);
            assert_eq!(s.records.len(), 3, "cut {cut}");
            assert_eq!(s.valid_len, h.encode().len() + three);
        }
        let s = scan(&whole).unwrap();
        assert_eq!((s.records.len(), s.closed), (4, false), "no End record: not closed");
    }

    #[test]
    fn a_changed_or_moved_record_does_not_open() {
        let (h, k) = (header(0), key(AeadAlg::Aes256Gcm));
        let mut file = segment(&h, &k, 3, true);
        // A flipped byte with a fixed-up CRC passes the scan but not the tag.
        let s = scan(&file).unwrap();
        let start = h.encode().len();
        let len = 8 + 13 + s.records[0].sealed.len();
        file[start + 20] ^= 1;
        let crc = crc32fast::hash(&file[start..start + len - 4]);
        file[start + len - 4..start + len].copy_from_slice(&crc.to_be_bytes());
        let s = scan(&file).unwrap();
        assert!(matches!(s.records[0].open(&h, &k), Err(RecorderError::Crypto { index: 0, .. })));
        // The same record read as if it were in another segment fails.
        let good = segment(&h, &k, 1, false);
        let other = header(1);
        assert!(scan(&good).unwrap().records[0].open(&other, &k).is_err());
        // And with another key.
        assert!(scan(&good).unwrap().records[0].open(&h, &key(AeadAlg::Aes256Gcm)).is_err());
    }

    #[test]
    fn a_foreign_file_is_refused() {
        assert!(scan(b"RIFF....WAVEfmt ").is_err());
        let mut f = header(0).encode();
        f[20] ^= 1;
        assert!(scan(&f).unwrap_err().to_string().contains("CRC"));
    }
}

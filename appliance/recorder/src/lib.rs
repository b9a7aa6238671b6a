//! The recorder's core (双录): what goes on disk and how it survives a crash, without network or services.
//!
//! Each track of a call is an append-only log cut into segments ([`format`]): a header, then records of arrival
//! time and one RTP or RTCP packet, each sealed under the recording's data key (AES-256-GCM or SM4-GCM) with its
//! place in the recording as associated data, and each followed by a CRC so a torn write is found without the key.
//! [`segmenter`] decides, as a sans-IO state machine, when to open, sync, roll and close segments; [`disk`] carries
//! that out on the filesystem (fdatasync, rename, directory fsync) and recovers a log cut short by `kill -9`.
//! [`manifest`] lists the segments with their SM3 hashes in a chain, and the gaps with their reasons, for keyd to seal.
//! [`recording`] ties the tracks of one call together on disk and resumes a recording after a crash.

pub mod disk;
pub mod format;
pub mod manifest;
pub mod recording;
pub mod segmenter;

/// Why recording or reading a recording failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecorderError {
    /// The filesystem refused (full disk, permissions, a vanished directory).
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A segment is not in the vbank format, or was altered.
    #[error("{0}")]
    Format(String),
    /// Sealing or opening a record failed (wrong key, altered record).
    #[error("record {index} of {what}: cannot be opened with this recording's key (altered, or the wrong key)")]
    Crypto {
        /// The segment.
        what: String,
        /// The record.
        index: u32,
    },
}

impl RecorderError {
    /// An I/O error at `path`.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> RecorderError {
        RecorderError::Io { path: path.display().to_string(), source }
    }
}

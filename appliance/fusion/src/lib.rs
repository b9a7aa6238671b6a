//! 融合双录: compose the tracks of a closed recording into one fragmented MP4 (H.264 + AAC) with the ffmpeg CLI.
//!
//! No transcoding happens while recording; fusion happens after the call, from the encrypted segments:
//! 1. the manifest must verify (a recording that fails its chain is not composed into evidence);
//! 2. a first pass over each track finds its capture clock ([`timeline`]) and its extent;
//! 3. a second pass depacketizes ([`depacketize`]) into IVF (video) and Ogg Opus (audio) with capture-time stamps
//!    ([`container`]), written into FIFOs in a private temporary directory, so no plaintext media touches a disk;
//! 4. ffmpeg lays the cameras side by side, mixes the microphones, burns in the capture time and the customer's
//!    declared location (and a viewer's watermark when exporting), and writes the MP4 to a pipe ([`plan`]).

pub mod container;
pub mod depacketize;
pub mod plan;
pub mod rtp;
pub mod source;
pub mod synthetic;
pub mod timeline;

mod run;

pub use run::{Fused, Options, default_font, display_time, fuse, fuse_verified, verified_manifest};

/// Why a fusion failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FusionError {
    /// Reading the recording or writing a pipe failed.
    #[error("{0}")]
    Io(String),
    /// The recording is unfinished, does not verify, or a record does not open.
    #[error("{0}")]
    Recording(String),
    /// ffmpeg is missing or failed.
    #[error("ffmpeg: {0}")]
    Ffmpeg(String),
}

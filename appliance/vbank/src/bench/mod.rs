//! `vbank bench …`: throughput figures measured against a peer in the same run, reported as medians and ratios.
//! The machines are shared and noisy, so nothing here asserts a speed; the numbers go in the README.

mod aead;
mod fusion;
pub(crate) mod gateway;
pub(crate) mod keyd;
mod kyc;
mod node;
mod tls;

use clap::Subcommand;

pub use keyd::raw as keyd_raw;

/// What to measure.
#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Data keys issued and opened per second through keyd vs raw PKCS#11 on the same SoftHSM token, and AEAD MB/s
    /// vs `openssl speed`.
    Keyd {
        /// Seconds per measurement round.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Rounds per measurement (the median is reported).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
    /// Full handshakes per second and bulk MB/s, TLS_SM4_GCM_SM3 vs TLS_AES_256_GCM_SHA384 on one listener.
    Tls {
        /// Seconds per handshake round.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Rounds (the median is reported).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
    /// Forwarded packets per CPU-second, latency and loss of N 1:1 calls through vbank's gateway vs Janus 1.1.2
    /// (Debian `janus`, videoroom) on loopback, with the same str0m load generator.
    Gateway {
        /// 1:1 calls (each two legs: a VP8 + Opus publisher and its subscriber).
        #[arg(long, default_value_t = 10)]
        calls: u32,
        /// Seconds per measured round.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Rounds (the median is reported).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// The Janus binary to compare against.
        #[arg(long, default_value = "/usr/bin/janus")]
        janus: std::path::PathBuf,
        /// Record every call: vbank's gateway + recorder against Janus's videoroom recording.
        #[arg(long)]
        record: bool,
    },
    /// CPU per recorded track, and fusion into the evidence MP4 (CPU-s per video-s, multiple of real time) against
    /// ffmpeg composing the same layout from the clip files, on a synthetic two-party call.
    Fusion {
        /// Length of the call, seconds.
        #[arg(long, default_value_t = 30)]
        seconds: u32,
        /// Rounds (the median is reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Identity checks through the KYC service vs straight to the vendor simulator (p50/p99 and the proxy's
    /// overhead), and the KYC engines' milliseconds per picture (OCR, face detection, face encoding).
    Kyc {
        /// Identity checks per round on each path.
        #[arg(long, default_value_t = 200)]
        requests: usize,
        /// Rounds (the median is reported).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// A picture with one face, for the face engines.
        #[arg(long, default_value = "tests/fixtures/faces/astronaut.jpg")]
        face: std::path::PathBuf,
    },
    /// Internal: the raw PKCS#11 half of `bench keyd`, run in its own process so it gets its own module state.
    #[command(hide = true)]
    KeydRaw {
        #[arg(long)]
        module: std::path::PathBuf,
        #[arg(long)]
        token: String,
        #[arg(long)]
        pin_file: std::path::PathBuf,
        #[arg(long)]
        kek: String,
        #[arg(long)]
        seconds: f64,
        #[arg(long)]
        rounds: usize,
    },
}

/// Run a benchmark.
pub async fn run(cmd: BenchCmd, json: bool) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Keyd { seconds, rounds } => keyd::run(seconds, rounds, json).await,
        BenchCmd::Tls { seconds, rounds } => {
            tokio::task::spawn_blocking(move || tls::run(seconds, rounds, json)).await?
        }
        BenchCmd::Gateway { calls, seconds, rounds, janus, record } => {
            gateway::run(gateway::Options { calls, seconds, rounds, janus, record }, json).await
        }
        BenchCmd::Fusion { seconds, rounds } => {
            tokio::task::spawn_blocking(move || fusion::run(seconds, rounds, json)).await?
        }
        BenchCmd::Kyc { requests, rounds, face } => kyc::run(requests, rounds, face, json).await,
        BenchCmd::KeydRaw { module, token, pin_file, kek, seconds, rounds } => {
            keyd_raw(&module, &token, &pin_file, &kek, seconds, rounds)
        }
    }
}

/// The median of a non-empty sample.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(super::median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}

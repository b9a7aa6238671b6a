//! AEAD throughput: vbank-crypto vs `openssl speed` on this machine, same buffer size.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, Result};
use vbank_crypto::aead::{AeadAlg, seal};

use super::median;

/// Buffer size for both sides (openssl speed's -bytes).
pub const BUF: usize = 16 * 1024;

/// MB/s (10^6 bytes) sealing `BUF`-byte buffers for `seconds`, median of `rounds`.
pub fn ours(alg: AeadAlg, seconds: f64, rounds: usize) -> Result<f64> {
    let key = vec![7u8; alg.key_len()];
    let data = vec![0x5au8; BUF];
    let mut samples = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        let mut bytes = 0usize;
        let mut nonce = [0u8; 12];
        while start.elapsed().as_secs_f64() < seconds {
            nonce[..8].copy_from_slice(&(bytes as u64).to_be_bytes());
            let out = seal(alg, &key, &nonce, b"aad", &data)?;
            bytes += out.len() - vbank_crypto::aead::TAG_LEN;
        }
        samples.push(bytes as f64 / start.elapsed().as_secs_f64() / 1e6);
    }
    Ok(median(samples))
}

/// MB/s of `openssl speed -evp <cipher>` with the same buffer size, median of `rounds` one-second runs.
pub fn openssl(cipher: &str, rounds: usize) -> Result<f64> {
    let mut samples = Vec::new();
    for _ in 0..rounds {
        let out = Command::new("openssl")
            .args(["speed", "-mr", "-seconds", "1", "-bytes", &BUF.to_string(), "-evp", cipher])
            .output()
            .context("running openssl speed")?;
        let text = String::from_utf8_lossy(&out.stdout);
        // "+F:<n>:<CIPHER>:<bytes per second>"
        let bps: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("+F:").and_then(|r| r.rsplit(':').next()).and_then(|v| v.trim().parse().ok()))
            .with_context(|| format!("no +F line in openssl speed output for {cipher}: {text}"))?;
        samples.push(bps / 1e6);
    }
    Ok(median(samples))
}

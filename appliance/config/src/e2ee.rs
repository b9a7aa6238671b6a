//! `[e2ee]`: which calls are end-to-end encrypted, and how.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::reader::Section;
use crate::schema::path_in;

/// `[e2ee]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct E2eeConfig {
    /// The front desk's business types whose calls are end-to-end encrypted (`"*"`: all of them).
    pub businesses: BTreeSet<String>,
    /// Calls joined without the front desk (call tokens from `vbank token`, the development pages) are encrypted too.
    pub direct: bool,
    /// The frame cipher: `aes-256-gcm` (WebCrypto) or `sm4-gcm` (国密, the pages' WebAssembly module).
    pub suite: String,
    /// The pages' frame-encryption WebAssembly module (`vbank_sframe_wasm.wasm`), served to their workers; needed
    /// for `sm4-gcm`.
    pub wasm: PathBuf,
}

impl E2eeConfig {
    /// Whether a call of `business` is end-to-end encrypted.
    pub fn covers(&self, business: &str) -> bool {
        self.businesses.contains("*") || self.businesses.contains(business)
    }
}

pub(crate) fn read_e2ee(s: &Section<'_, '_>) -> E2eeConfig {
    let list = s.string("businesses", "", "a comma-separated list of business types, or \"*\"");
    let cfg = E2eeConfig {
        businesses: list.split(',').map(str::trim).filter(|b| !b.is_empty()).map(str::to_string).collect(),
        direct: s.boolean("direct", false),
        suite: s.choice("suite", &["aes-256-gcm", "sm4-gcm"], "aes-256-gcm").to_string(),
        wasm: path_in(s, "wasm", PathBuf::from("/usr/lib/vbank/vbank_sframe_wasm.wasm")),
    };
    s.finish();
    cfg
}

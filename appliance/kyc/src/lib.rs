//! KYC's decision-free core, without IO: is this identifier well formed, what may a teller see of it, what goes into a
//! log instead of it, and how a vendor request is signed. The KYC proxy service (`vbank kyc`) puts these at its edges.
//!
//! - [`id`]: resident ID numbers (GB 11643-1999) — 18-digit with the ISO 7064 MOD 11-2 check, legacy 15-digit, the
//!   HK/Macau/Taiwan residence permits and the 2023 permanent-residence card — checked against the region codes,
//!   retired ones included.
//! - [`uscc`]: unified social credit codes (GB 32100-2015) with the organisation code inside (GB 11714).
//! - [`mask`]: what a teller sees by default (110101********8888, 张*三), with configurable rules; [`mask::token`]
//!   the keyed HMAC-SM3 token logs carry instead.
//! - [`tc3`]: Tencent Cloud API 3.0 request signing (TC3-HMAC-SHA256); [`acs3`]: Alibaba Cloud's (ACS3-HMAC-SHA256).
//! - [`vendor`]: each vendor's requests and what its answers mean (verdict, billed, retryable), and a circuit breaker.
//! - [`simulator`]: the vendors' side of the same protocols, with faults on demand, for tests and drills.

pub mod acs3;
pub mod id;
pub mod mask;
pub mod simulator;
pub mod tc3;
pub mod uscc;
pub mod vendor;

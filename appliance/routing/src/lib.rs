//! Queueing and routing of banking calls, as a state machine with no IO and no clock (after str0m): inputs carry the
//! time in milliseconds, [`Router::poll_output`] says what to tell tellers and customers, and
//! [`Router::snapshot`] / [`Router::restore`] carry the whole state through the store across a restart.
//!
//! The rules (issue 6):
//! - a queue per business type; a teller takes only the business types they are permitted for;
//! - a waiting customer goes to their own account manager if that teller is available and permitted, else to the
//!   permitted available teller idle the longest, else waits: higher priority first, then first come first served;
//! - an offered teller rings for [`Config::ring_ms`]; a ring that is not answered is withdrawn, the teller is set
//!   away (they are not at their desk), and the customer is offered to the next teller;
//! - of two tellers answering the same customer, exactly one wins: answers are applied one at a time and only the
//!   teller currently offered the customer can take them;
//! - a call can be transferred to another teller (warm: both are in the call until the first leaves) or back into a
//!   queue, where it keeps its place ahead of later arrivals.

mod state;

pub use state::{Output, Priority, Router, TellerState};

use serde::{Deserialize, Serialize};

/// A teller's account name.
pub type TellerId = String;
/// A customer's session id (one per visit to the H5 page).
pub type CustomerId = String;

/// Routing settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// How long an offered teller rings before the customer goes to the next one, ms.
    pub ring_ms: u64,
    /// Average handling time used for the estimated wait, ms.
    pub handle_ms: u64,
    /// The business types (queue names), e.g. `corporate-account`, `loan-signing`, `wealth`.
    pub businesses: Vec<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            ring_ms: 15_000,
            handle_ms: 300_000,
            businesses: vec!["corporate-account".into(), "loan-signing".into(), "wealth".into()],
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoutingError {
    /// No queue for this business type.
    #[error("no queue for business type {0:?}: choose one of the bank's business types")]
    NoSuchBusiness(String),
    /// The teller is not known (never logged in).
    #[error("teller {0} is not logged in")]
    UnknownTeller(String),
    /// The customer is not waiting or in a call.
    #[error("customer {0} is not waiting")]
    UnknownCustomer(String),
    /// The teller may not take this business type.
    #[error("teller {teller} is not permitted for {business}: ask a supervisor to grant it")]
    NotPermitted {
        /// The teller.
        teller: String,
        /// The business type.
        business: String,
    },
    /// Another teller answered first, or the ring was withdrawn.
    #[error("customer {0} is no longer ringing for you: another teller answered, or the ring timed out")]
    NotOffered(String),
    /// The customer is already waiting or in a call.
    #[error("customer {0} is already in the queue or in a call")]
    AlreadyQueued(String),
}

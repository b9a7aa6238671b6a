//! Screen sharing, only with the customer's consent. The teller asks (`screen_request`); the customer's page shows
//! what sharing means and asks; the customer allows or declines, then the page reports when sharing starts and
//! stops. Each step goes into the call's recording before the teller hears of it, so the recording shows that the
//! consent came before the first shared frame. While sharing, the customer's camera track carries the screen (the
//! page swaps the track; no renegotiation), so the recording holds what the teller saw.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::json;

use super::Desk;

/// Where a customer's screen share stands, as their page reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum ShareState {
    /// The customer accepted the request.
    Allowed,
    /// The customer declined (or closed the browser's picker).
    Declined,
    /// The screen is on the customer's video now.
    Started,
    /// Back to the camera.
    Stopped,
}

impl ShareState {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            ShareState::Allowed => "allowed",
            ShareState::Declined => "declined",
            ShareState::Started => "started",
            ShareState::Stopped => "stopped",
        }
    }
}

/// Requests and consents per customer.
#[derive(Default)]
pub(super) struct Shares {
    /// Customers a teller has asked, who have not answered yet.
    asked: HashSet<String>,
    /// Customers who allowed sharing in this call.
    allowed: HashSet<String>,
}

impl Desk {
    /// The teller in `customer`'s call asks to see their screen.
    pub(super) async fn request_screen(&self, teller: &str, customer: &str) -> Result<(), String> {
        let Some(room) = self.teller_room(teller, customer).await else {
            return Err(format!("you are not in a call with {customer}"));
        };
        self.inner.lock().expect("not poisoned").shares.asked.insert(customer.to_string());
        self.calls.record(&room, json!({"kind": "screen_request", "teller": teller})).await;
        self.send_customer(customer, json!({"type": "screen_request", "teller": teller}));
        Ok(())
    }

    /// The customer's page reports a step; it is recorded, then the call's tellers are told.
    pub(super) async fn screen(&self, customer: &str, state: ShareState) -> Result<(), String> {
        let room = {
            let mut inner = self.inner.lock().expect("not poisoned");
            let Some(room) = inner.rooms.get(customer).cloned() else {
                return Err("there is no call to share your screen in".into());
            };
            let shares = &mut inner.shares;
            match state {
                ShareState::Allowed | ShareState::Declined if !shares.asked.remove(customer) => {
                    return Err("nobody asked to see your screen".into());
                }
                ShareState::Allowed => {
                    shares.allowed.insert(customer.to_string());
                }
                ShareState::Started if !shares.allowed.contains(customer) => {
                    return Err("screen sharing starts only after you allow it".into());
                }
                ShareState::Stopped => {
                    shares.allowed.remove(customer);
                }
                _ => {}
            }
            room
        };
        self.calls.record(&room, json!({"kind": "screen_share", "state": state.as_str()})).await;
        let tellers = self.router.lock().await.call_of(customer).map(<[String]>::to_vec).unwrap_or_default();
        for t in tellers {
            self.send_teller(&t, json!({"type": "screen", "customer": customer, "state": state.as_str()}));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_states_read_as_the_page_sends_them() {
        let s: ShareState = serde_json::from_str("\"started\"").unwrap();
        assert_eq!(s, ShareState::Started);
        assert_eq!(s.as_str(), "started");
        assert!(serde_json::from_str::<ShareState>("\"recording\"").is_err());
    }
}

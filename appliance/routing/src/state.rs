//! The router's state and its rules.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::{Config, CustomerId, RoutingError, TellerId};

/// What a teller is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TellerState {
    /// Not logged in.
    Offline,
    /// Ready for the next customer.
    Available,
    /// In a call.
    Busy,
    /// Finishing the last call's paperwork.
    WrapUp,
    /// Logged in but not taking calls (break, or a ring went unanswered).
    Away,
}

/// A waiting customer's priority class (e.g. elderly or private-banking customers first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Priority {
    /// The usual.
    Normal,
    /// Served before every normal customer.
    High,
}

/// What the router wants said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Ring `teller` for `customer` until `until_ms` (a transfer names the teller handing over).
    Ring {
        /// The teller.
        teller: TellerId,
        /// The customer.
        customer: CustomerId,
        /// The business type.
        business: String,
        /// When the ring gives up.
        until_ms: u64,
        /// The teller transferring the call, for a transfer.
        from: Option<TellerId>,
    },
    /// Stop ringing `teller` for `customer`.
    RingWithdrawn {
        /// The teller.
        teller: TellerId,
        /// The customer.
        customer: CustomerId,
        /// Why: `answered-elsewhere`, `timeout`, `customer-left`, `declined`.
        why: &'static str,
    },
    /// `teller` joins `customer`'s call.
    Connected {
        /// The teller.
        teller: TellerId,
        /// The customer.
        customer: CustomerId,
        /// The business type.
        business: String,
    },
    /// A transfer to a named teller did not happen (no answer); the call stays with `from`.
    TransferFailed {
        /// The customer.
        customer: CustomerId,
        /// The teller who asked.
        from: TellerId,
        /// The teller who did not answer.
        to: TellerId,
    },
    /// `customer` is `position`th in their queue; the estimated wait.
    Position {
        /// The customer.
        customer: CustomerId,
        /// 1 = next.
        position: usize,
        /// Estimated wait, ms.
        wait_ms: u64,
    },
    /// A teller's state changed (told to the teller's console and the supervisors).
    State {
        /// The teller.
        teller: TellerId,
        /// The new state.
        state: TellerState,
    },
    /// Nothing more until this time (ms), or new input.
    Timeout(u64),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Teller {
    permitted: BTreeSet<String>,
    state: TellerState,
    /// Since when available (longest idle goes first).
    idle_since_ms: u64,
    ringing: Option<CustomerId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Waiting {
    customer: CustomerId,
    business: String,
    priority: Priority,
    /// Place in the queue: join time (a call transferred back to a queue keeps its first one).
    since_ms: u64,
    manager: Option<TellerId>,
    /// A transfer to this teller only, from `from`.
    only: Option<TellerId>,
    from: Option<TellerId>,
    offered: Option<(TellerId, u64)>,
    /// Tellers who let it ring out or declined.
    passed: BTreeSet<TellerId>,
    /// The place and wait last told to the customer.
    last_position: Option<(usize, u64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Call {
    business: String,
    tellers: Vec<TellerId>,
    /// When the customer first joined a queue.
    since_ms: u64,
}

/// Queues, tellers and calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Router {
    cfg: Config,
    tellers: BTreeMap<TellerId, Teller>,
    waiting: Vec<Waiting>,
    calls: BTreeMap<CustomerId, Call>,
    #[serde(skip)]
    out: VecDeque<Output>,
}

impl Router {
    /// An empty router.
    pub fn new(cfg: Config) -> Router {
        Router { cfg, tellers: BTreeMap::new(), waiting: Vec::new(), calls: BTreeMap::new(), out: VecDeque::new() }
    }

    /// The whole state, for the store.
    pub fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("the router always serializes")
    }

    /// The state saved by [`Router::snapshot`], with `cfg` as it is now.
    pub fn restore(bytes: &[u8], cfg: Config) -> Result<Router, serde_json::Error> {
        let mut r: Router = serde_json::from_slice(bytes)?;
        r.cfg = cfg;
        Ok(r)
    }

    /// What supervisors see: every teller's state, every queue with its waits, every call.
    pub fn overview(&self, now: u64) -> serde_json::Value {
        let tellers: Vec<serde_json::Value> = self
            .tellers
            .iter()
            .map(|(name, t)| {
                serde_json::json!({"name": name, "state": t.state, "ringing": t.ringing, "businesses": t.permitted,
                                   "idle_ms": (t.state == TellerState::Available).then(|| now.saturating_sub(t.idle_since_ms))})
            })
            .collect();
        let queues: Vec<serde_json::Value> = self
            .cfg
            .businesses
            .iter()
            .map(|b| {
                let waiting: Vec<&Waiting> =
                    self.ordered().into_iter().filter(|w| &w.business == b && w.only.is_none()).collect();
                serde_json::json!({"business": b, "waiting": waiting.len(),
                                   "longest_wait_ms": waiting.iter().map(|w| now.saturating_sub(w.since_ms)).max()})
            })
            .collect();
        let calls: Vec<serde_json::Value> = self
            .calls
            .iter()
            .map(|(c, call)| serde_json::json!({"customer": c, "business": call.business, "tellers": call.tellers}))
            .collect();
        serde_json::json!({"tellers": tellers, "queues": queues, "calls": calls})
    }

    /// A teller's state (`Offline` when unknown).
    pub fn teller_state(&self, teller: &str) -> TellerState {
        self.tellers.get(teller).map_or(TellerState::Offline, |t| t.state)
    }

    /// The tellers in `customer`'s call.
    pub fn call_of(&self, customer: &str) -> Option<&[TellerId]> {
        self.calls.get(customer).map(|c| c.tellers.as_slice())
    }

    /// A waiting customer's place in their queue and the estimated wait (ms), as last told.
    pub fn queue_position(&self, customer: &str) -> Option<(usize, u64)> {
        self.waiting.iter().find(|w| w.customer == customer).and_then(|w| w.last_position)
    }

    /// Customers waiting in `business`'s queue, next first.
    pub fn queue(&self, business: &str) -> Vec<CustomerId> {
        self.ordered().into_iter().filter(|w| w.business == business).map(|w| w.customer.clone()).collect()
    }

    fn ordered(&self) -> Vec<&Waiting> {
        let mut v: Vec<&Waiting> = self.waiting.iter().collect();
        v.sort_by_key(|w| (Reverse(w.priority), w.since_ms, w.customer.clone()));
        v
    }

    fn set_state(&mut self, now: u64, teller: &str, state: TellerState) {
        let Some(t) = self.tellers.get_mut(teller) else { return };
        if t.state == state {
            return;
        }
        if state == TellerState::Available {
            t.idle_since_ms = now;
        }
        t.state = state;
        self.out.push_back(Output::State { teller: teller.to_string(), state });
        if state != TellerState::Available
            && let Some(customer) = t.ringing.clone()
        {
            self.withdraw(&customer, "declined");
        }
    }

    /// Stop the ring for `customer` (if any); the teller it rang is passed over for this customer.
    fn withdraw(&mut self, customer: &str, why: &'static str) {
        let Some(w) = self.waiting.iter_mut().find(|w| w.customer == customer) else { return };
        let Some((teller, _)) = w.offered.take() else { return };
        w.passed.insert(teller.clone());
        if let Some(t) = self.tellers.get_mut(&teller) {
            t.ringing = None;
        }
        self.out.push_back(Output::RingWithdrawn { teller, customer: customer.to_string(), why });
    }

    /// A teller logs in, permitted for `businesses`; they start available.
    pub fn login(&mut self, now: u64, teller: &str, businesses: BTreeSet<String>) {
        let t = self.tellers.entry(teller.to_string()).or_insert(Teller {
            permitted: BTreeSet::new(),
            state: TellerState::Offline,
            idle_since_ms: now,
            ringing: None,
        });
        t.permitted = businesses;
        self.set_state(now, teller, TellerState::Available);
        self.route(now);
    }

    /// A teller changes state (available, wrap-up, away, offline). A teller in a call stays busy until it ends.
    pub fn set(&mut self, now: u64, teller: &str, state: TellerState) -> Result<(), RoutingError> {
        if !self.tellers.contains_key(teller) {
            return Err(RoutingError::UnknownTeller(teller.into()));
        }
        let in_call = self.calls.values().any(|c| c.tellers.iter().any(|t| t == teller));
        let state = if in_call && state != TellerState::Offline { TellerState::Busy } else { state };
        self.set_state(now, teller, state);
        self.route(now);
        Ok(())
    }

    /// A customer joins `business`'s queue (their account manager, if they have one, is tried first).
    pub fn join(
        &mut self,
        now: u64,
        customer: &str,
        business: &str,
        priority: Priority,
        manager: Option<&str>,
    ) -> Result<(), RoutingError> {
        if !self.cfg.businesses.iter().any(|b| b == business) {
            return Err(RoutingError::NoSuchBusiness(business.into()));
        }
        if self.calls.contains_key(customer) || self.waiting.iter().any(|w| w.customer == customer) {
            return Err(RoutingError::AlreadyQueued(customer.into()));
        }
        self.waiting.push(Waiting {
            customer: customer.into(),
            business: business.into(),
            priority,
            since_ms: now,
            manager: manager.map(str::to_string),
            only: None,
            from: None,
            offered: None,
            passed: BTreeSet::new(),
            last_position: None,
        });
        self.route(now);
        Ok(())
    }

    /// The customer left (hung up, closed the tab): out of the queue, or their call ends.
    pub fn leave(&mut self, now: u64, customer: &str) -> Result<(), RoutingError> {
        let waited = self.waiting.iter().any(|w| w.customer == customer);
        if waited {
            self.withdraw(customer, "customer-left");
            self.waiting.retain(|w| w.customer != customer);
        }
        let call = self.calls.remove(customer);
        if let Some(call) = &call {
            for t in &call.tellers {
                self.set_state(now, t, TellerState::WrapUp);
            }
        }
        if !waited && call.is_none() {
            return Err(RoutingError::UnknownCustomer(customer.into()));
        }
        self.route(now);
        Ok(())
    }

    /// A teller answers a ring. Only the teller being rung for this customer can: a second answer fails.
    pub fn answer(&mut self, now: u64, teller: &str, customer: &str) -> Result<(), RoutingError> {
        let pos = self
            .waiting
            .iter()
            .position(|w| w.customer == customer && w.offered.as_ref().is_some_and(|(t, _)| t == teller))
            .ok_or_else(|| RoutingError::NotOffered(customer.into()))?;
        let w = self.waiting.remove(pos);
        if let Some(t) = self.tellers.get_mut(teller) {
            t.ringing = None;
        }
        // A transfer's call already holds the teller handing over; a new call starts here.
        let call = self.calls.entry(customer.to_string()).or_insert(Call {
            business: w.business.clone(),
            tellers: vec![],
            since_ms: w.since_ms,
        });
        call.tellers.push(teller.to_string());
        self.set_state(now, teller, TellerState::Busy);
        self.out.push_back(Output::Connected {
            teller: teller.into(),
            customer: customer.into(),
            business: w.business,
        });
        self.route(now);
        Ok(())
    }

    /// A teller declines a ring: the customer goes to the next teller.
    pub fn decline(&mut self, now: u64, teller: &str, customer: &str) -> Result<(), RoutingError> {
        let rung =
            self.waiting.iter().any(|w| w.customer == customer && w.offered.as_ref().is_some_and(|(t, _)| t == teller));
        if !rung {
            return Err(RoutingError::NotOffered(customer.into()));
        }
        self.withdraw(customer, "declined");
        self.finish_transfer_attempt(customer);
        self.route(now);
        Ok(())
    }

    /// A teller leaves the customer's call (the warm-transfer hand-over, or the end): wrap-up for them; the call ends
    /// when no teller is left in it.
    pub fn hang_up(&mut self, now: u64, teller: &str, customer: &str) -> Result<(), RoutingError> {
        let call = self.calls.get_mut(customer).ok_or_else(|| RoutingError::UnknownCustomer(customer.into()))?;
        call.tellers.retain(|t| t != teller);
        if call.tellers.is_empty() {
            self.calls.remove(customer);
            // A transfer still ringing has no call to join any more.
            if self.waiting.iter().any(|w| w.customer == customer) {
                self.withdraw(customer, "customer-left");
                self.waiting.retain(|w| w.customer != customer);
            }
        }
        self.set_state(now, teller, TellerState::WrapUp);
        self.route(now);
        Ok(())
    }

    /// Transfer `customer`'s call from `from` to the teller `to` (warm: `to` joins while `from` stays until they hang
    /// up). `to` must be available and permitted; if they do not answer, [`Output::TransferFailed`].
    pub fn transfer_to_teller(&mut self, now: u64, from: &str, customer: &str, to: &str) -> Result<(), RoutingError> {
        let call = self.calls.get(customer).filter(|c| c.tellers.iter().any(|t| t == from));
        let business = call.ok_or_else(|| RoutingError::UnknownCustomer(customer.into()))?.business.clone();
        let target = self.tellers.get(to).ok_or_else(|| RoutingError::UnknownTeller(to.into()))?;
        if !target.permitted.contains(&business) {
            return Err(RoutingError::NotPermitted { teller: to.into(), business });
        }
        self.waiting.push(Waiting {
            customer: customer.into(),
            business,
            priority: Priority::High,
            since_ms: now,
            manager: None,
            only: Some(to.into()),
            from: Some(from.into()),
            offered: None,
            passed: BTreeSet::new(),
            last_position: None,
        });
        self.route(now);
        Ok(())
    }

    /// Transfer `customer` from `from` back into `business`'s queue, keeping their place ahead of later arrivals.
    pub fn transfer_to_queue(
        &mut self,
        now: u64,
        from: &str,
        customer: &str,
        business: &str,
    ) -> Result<(), RoutingError> {
        if !self.cfg.businesses.iter().any(|b| b == business) {
            return Err(RoutingError::NoSuchBusiness(business.into()));
        }
        if !self.calls.get(customer).is_some_and(|c| c.tellers.iter().any(|t| t == from)) {
            return Err(RoutingError::UnknownCustomer(customer.into()));
        }
        let since_ms = self.calls.remove(customer).map_or(now, |c| c.since_ms);
        self.set_state(now, from, TellerState::WrapUp);
        self.waiting.push(Waiting {
            customer: customer.into(),
            business: business.into(),
            priority: Priority::High,
            since_ms,
            manager: None,
            only: None,
            from: None,
            offered: None,
            passed: BTreeSet::from([from.to_string()]),
            last_position: None,
        });
        self.route(now);
        Ok(())
    }

    /// A transfer to one named teller ends after its one ring.
    fn finish_transfer_attempt(&mut self, customer: &str) {
        if let Some(pos) = self.waiting.iter().position(|w| w.customer == customer && w.only.is_some()) {
            let w = self.waiting.remove(pos);
            if let (Some(from), Some(to)) = (w.from, w.only) {
                self.out.push_back(Output::TransferFailed { customer: customer.into(), from, to });
            }
        }
    }

    /// Time passed: unanswered rings give up, their tellers are set away, and their customers go to the next teller.
    pub fn timeout(&mut self, now: u64) {
        let expired: Vec<(CustomerId, TellerId)> = self
            .waiting
            .iter()
            .filter_map(|w| {
                w.offered.as_ref().filter(|(_, until)| *until <= now).map(|(t, _)| (w.customer.clone(), t.clone()))
            })
            .collect();
        for (customer, teller) in expired {
            self.withdraw(&customer, "timeout");
            self.set_state(now, &teller, TellerState::Away);
            self.finish_transfer_attempt(&customer);
        }
        self.route(now);
    }

    /// The teller to ring for `w`, if one is free.
    fn pick(&self, w: &Waiting) -> Option<TellerId> {
        let free = |id: &str| {
            self.tellers.get(id).is_some_and(|t| {
                t.state == TellerState::Available
                    && t.ringing.is_none()
                    && t.permitted.contains(&w.business)
                    && !w.passed.contains(id)
            })
        };
        if let Some(only) = &w.only {
            return free(only).then(|| only.clone());
        }
        if let Some(m) = w.manager.as_deref().filter(|m| free(m)) {
            return Some(m.to_string());
        }
        self.tellers
            .iter()
            .filter(|(id, _)| free(id))
            .min_by_key(|(id, t)| (t.idle_since_ms, (*id).clone()))
            .map(|(id, _)| id.clone())
    }

    fn route(&mut self, now: u64) {
        let order: Vec<CustomerId> = self.ordered().into_iter().map(|w| w.customer.clone()).collect();
        for customer in &order {
            let Some(i) = self.waiting.iter().position(|w| &w.customer == customer) else { continue };
            if self.waiting[i].offered.is_some() {
                continue;
            }
            let Some(teller) = self.pick(&self.waiting[i]) else { continue };
            let until_ms = now + self.cfg.ring_ms;
            let w = &mut self.waiting[i];
            w.offered = Some((teller.clone(), until_ms));
            let ring = Output::Ring {
                teller: teller.clone(),
                customer: customer.clone(),
                business: w.business.clone(),
                until_ms,
                from: w.from.clone(),
            };
            if let Some(t) = self.tellers.get_mut(&teller) {
                t.ringing = Some(customer.clone());
            }
            self.out.push_back(ring);
        }
        self.positions();
    }

    /// Tell each waiting customer their place when it changed.
    fn positions(&mut self) {
        let order: Vec<(CustomerId, String)> = self
            .ordered()
            .into_iter()
            .filter(|w| w.only.is_none())
            .map(|w| (w.customer.clone(), w.business.clone()))
            .collect();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for (customer, business) in order {
            let n = seen.entry(business.clone()).or_insert(0);
            *n += 1;
            let position = *n;
            let staff = self
                .tellers
                .values()
                .filter(|t| {
                    t.permitted.contains(&business) && !matches!(t.state, TellerState::Offline | TellerState::Away)
                })
                .count()
                .max(1) as u64;
            let wait_ms = (position as u64 - 1) * self.cfg.handle_ms / staff;
            let Some(w) = self.waiting.iter_mut().find(|w| w.customer == customer) else { continue };
            if w.last_position != Some((position, wait_ms)) {
                w.last_position = Some((position, wait_ms));
                self.out.push_back(Output::Position { customer, position, wait_ms });
            }
        }
    }

    /// The next thing to say; [`Output::Timeout`] when there is nothing (with the next ring deadline, or `u64::MAX`).
    pub fn poll_output(&mut self) -> Output {
        if let Some(o) = self.out.pop_front() {
            return o;
        }
        Output::Timeout(
            self.waiting.iter().filter_map(|w| w.offered.as_ref().map(|(_, u)| *u)).min().unwrap_or(u64::MAX),
        )
    }
}

#[cfg(test)]
mod tests;

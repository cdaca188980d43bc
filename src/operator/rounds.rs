//! When the operator may run a round: never on a partial view of the cluster, and never held
//! back for long by a steady stream of changes. Pure: `now` is passed in.
//!
//! A watch starts (and re-starts, after its resource version expired) with a list that the
//! API server sends in pages; the catalog sees each page's objects as they come. A round run
//! between two pages would build Systems without the Policies or Stacks of later pages and
//! publish weaker bundles. So a round waits until every kind's list is complete. After that,
//! changes are batched: a round starts [`QUIET`] after the last change, and at most
//! [`MAX_DELAY`] after the first change it has not handled yet.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::watch::Change;

/// How long a round waits for more changes after the last one.
pub const QUIET: Duration = Duration::from_millis(50);

/// How long a round waits at most after the first change it has not handled.
pub const MAX_DELAY: Duration = Duration::from_millis(200);

/// The kinds the operator lists and watches.
pub const KINDS: [&str; 5] = ["Tenant", "Stack", "System", "Policy", "Namespace"];

/// What the run loop knows of its watches and of the changes not yet handled.
#[derive(Debug)]
pub struct Rounds {
    /// Kinds whose list has not completed since the watch (re)started.
    listing: BTreeSet<&'static str>,
    /// When the first and the last change not yet handled arrived.
    pending: Option<(Instant, Instant)>,
}

impl Default for Rounds {
    fn default() -> Self {
        Rounds { listing: KINDS.into_iter().collect(), pending: None }
    }
}

impl Rounds {
    /// Watches just started: every kind is still to be listed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Take note of one change from the watches.
    pub fn observe(&mut self, change: &Change, now: Instant) {
        match change {
            Change::Listing(kind) => {
                self.listing.insert(kind);
            }
            Change::Resync(kind, _) => {
                self.listing.remove(kind.as_str());
            }
            Change::NamespaceResync(_) => {
                self.listing.remove("Namespace");
            }
            // edict's own ConfigMap writes come back as these: no round for them.
            Change::Error(_) | Change::OwnedConfigMap(_, true) => return,
            _ => {}
        }
        self.pending = Some(match self.pending {
            Some((first, _)) => (first, now),
            None => (now, now),
        });
    }

    /// Whether every kind's list has completed: the catalog holds the whole cluster.
    pub fn synced(&self) -> bool {
        self.listing.is_empty()
    }

    /// The kinds whose list has not completed yet.
    pub fn waiting_for(&self) -> Vec<&'static str> {
        self.listing.iter().copied().collect()
    }

    /// Whether changes wait for a round.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// When a round for the changes seen may start: `None` while a list is incomplete or
    /// when nothing is pending.
    pub fn due(&self) -> Option<Instant> {
        if !self.synced() {
            return None;
        }
        let (first, last) = self.pending?;
        Some((last + QUIET).min(first + MAX_DELAY))
    }

    /// A round started: it handles every change seen so far.
    pub fn started(&mut self) {
        self.pending = None;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::model::{Kind, ObjectKey};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Rounds after every first list completed and the first round ran.
    fn synced(t0: Instant) -> Rounds {
        let mut r = Rounds::new();
        for kind in Kind::ALL {
            r.observe(&Change::Resync(kind, BTreeSet::new()), t0);
        }
        r.observe(&Change::NamespaceResync(BTreeSet::new()), t0);
        r.started();
        r
    }

    #[test]
    fn no_round_before_every_list_completed() {
        let t0 = Instant::now();
        let mut r = Rounds::new();
        assert!(!r.synced());
        assert_eq!(r.waiting_for(), vec!["Namespace", "Policy", "Stack", "System", "Tenant"]);
        for (i, kind) in
            [Some(Kind::Tenant), None, Some(Kind::Stack), Some(Kind::System)].into_iter().enumerate()
        {
            let now = t0 + ms(10 * i as u64);
            match kind {
                None => r.observe(&Change::NamespaceResync(BTreeSet::new()), now),
                Some(kind) => r.observe(&Change::Resync(kind, BTreeSet::new()), now),
            }
            assert_eq!(r.due(), None, "Policies are still listing after {kind:?}");
        }
        assert_eq!(r.waiting_for(), vec!["Policy"]);
        r.observe(&Change::Delete(Kind::Policy, ObjectKey::new("a", "b")), t0 + ms(500));
        assert_eq!(r.due(), None);
        r.observe(&Change::Resync(Kind::Policy, BTreeSet::new()), t0 + ms(600));
        assert!(r.synced());
        // The changes seen while listing wait no longer than the bound from the first of them.
        assert_eq!(r.due(), Some(t0 + MAX_DELAY));
        r.started();
        assert_eq!(r.due(), None, "nothing pending after the round");
    }

    #[test]
    fn a_relist_holds_rounds_until_it_completes() {
        let t0 = Instant::now();
        let mut r = synced(t0);
        r.observe(&Change::Listing("Stack"), t0 + ms(1000));
        r.observe(&Change::Delete(Kind::Stack, ObjectKey::new("p", "s")), t0 + ms(1001));
        assert_eq!(r.due(), None, "the Stacks are being listed again");
        r.observe(&Change::Resync(Kind::Stack, BTreeSet::new()), t0 + ms(1100));
        assert_eq!(r.due(), Some(t0 + ms(1100) + QUIET));
    }

    #[test]
    fn a_steady_stream_of_changes_holds_a_round_back_at_most_the_bound() {
        let t0 = Instant::now();
        let mut r = synced(t0);
        // One change every 10 ms for a second (a long `kubectl apply`).
        let start = t0 + ms(1000);
        let mut ran = Vec::new();
        for i in 0..100 {
            let now = start + ms(10 * i);
            if r.due().is_some_and(|due| due <= now) {
                ran.push(now);
                r.started();
            }
            r.observe(&Change::Delete(Kind::Policy, ObjectKey::new("a", format!("p{i}"))), now);
        }
        assert!(ran.len() >= 4, "rounds ran at {ran:?}");
        let mut last = start;
        for at in ran {
            assert!(at - last <= MAX_DELAY + ms(10), "a round waited {:?}", at - last);
            last = at;
        }
        // Once the stream stops, the last changes wait only the quiet time.
        let end = start + ms(990);
        assert!(r.due().expect("pending") <= end + QUIET);
    }

    #[test]
    fn watch_errors_are_not_changes() {
        let t0 = Instant::now();
        let mut r = synced(t0);
        r.observe(&Change::Error("watching Policys: connection refused".into()), t0);
        assert!(!r.has_pending());
        assert_eq!(r.due(), None);
    }
}

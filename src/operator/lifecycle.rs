//! Each System's lifecycle beside its build and status: steady, retrying after a failure that
//! may pass (with its cause, the time of the next attempt and the back-off so far), or retiring
//! after its deletion until everything edict wrote for it is gone.
//!
//! Transitions are pure: the caller passes `now`, so back-off and deletion are tested without
//! a clock. The engine reads the clock once per step and keeps one [`Lifecycle`] per System
//! that is not steady.

use std::collections::BTreeMap;
use std::time::Instant;

use super::wiring::Retirement;
use crate::model::ObjectKey;
use crate::retry::Backoff;

/// What failed, so that the retry does that again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// Building or publishing the bundle (storage unreachable, a lost race).
    Publish,
    /// Applying what goes beside the bundle (ConfigMap, ServiceAccount, IAM role).
    Wiring,
}

/// A System that is not steady.
#[derive(Clone, Debug, Default)]
pub struct Lifecycle {
    /// Failed attempts in a row: the next delay grows with them.
    pub failures: u32,
    /// When to try again, and what.
    pub retry: Option<(Instant, Cause)>,
    /// Deleted: what remains to remove, and when to try the removal (`None`: now).
    pub retiring: Option<(Retirement, Option<Instant>)>,
}

impl Lifecycle {
    /// `cause` failed at `now` in a way that may pass: try again after the back-off, which
    /// grows with each failure in a row. Returns when.
    pub fn failed(&mut self, cause: Cause, now: Instant, backoff: &Backoff) -> Instant {
        let at = now + backoff.delay(self.failures);
        self.failures += 1;
        self.retry = Some((at, cause));
        at
    }

    /// An attempt starts: the scheduled retry is taken (a failure schedules the next).
    pub fn attempting(&mut self) {
        self.retry = None;
    }

    /// A step succeeded: with nothing else scheduled, the back-off starts over.
    pub fn succeeded(&mut self) {
        if self.retry.is_none() {
            self.failures = 0;
        }
    }

    /// The System was deleted: what edict wrote for it is removed, now; any retry of a publish or
    /// wiring is moot.
    pub fn retire(&mut self, retirement: Retirement) {
        *self = Lifecycle { failures: 0, retry: None, retiring: Some((retirement, None)) };
    }

    /// The removal failed at `now`: try again after the back-off. Returns whether this was the
    /// first failure (users are told once, not at every retry).
    pub fn cleanup_failed(&mut self, now: Instant, backoff: &Backoff) -> bool {
        let first = self.failures == 0;
        let at = now + backoff.delay(self.failures);
        self.failures += 1;
        if let Some((_, when)) = &mut self.retiring {
            *when = Some(at);
        }
        first
    }

    /// Everything edict wrote for the deleted System is gone.
    pub fn retired(&mut self) {
        *self = Lifecycle::default();
    }

    /// Whether a retry of a publish or wiring is due at `now`.
    pub fn retry_due(&self, now: Instant) -> bool {
        self.retry.is_some_and(|(at, _)| at <= now)
    }

    /// Whether the removal is due at `now`.
    pub fn cleanup_due(&self, now: Instant) -> bool {
        self.retiring.as_ref().is_some_and(|(_, at)| at.is_none_or(|at| at <= now))
    }

    /// When something is next due (`now` when the removal waits for no back-off).
    pub fn wake(&self, now: Instant) -> Option<Instant> {
        let cleanup = self.retiring.as_ref().map(|(_, at)| at.unwrap_or(now));
        [self.retry.map(|(at, _)| at), cleanup].into_iter().flatten().min()
    }

    /// Whether nothing is pending: the System is steady and needs no entry.
    pub fn is_steady(&self) -> bool {
        self.failures == 0 && self.retry.is_none() && self.retiring.is_none()
    }
}

/// The lifecycles of the Systems that are not steady.
#[derive(Debug, Default)]
pub struct Lifecycles {
    systems: BTreeMap<ObjectKey, Lifecycle>,
}

impl Lifecycles {
    /// Advance `key`'s lifecycle with `step`; a System that becomes steady leaves the map.
    pub fn update<T>(&mut self, key: &ObjectKey, step: impl FnOnce(&mut Lifecycle) -> T) -> T {
        let entry = self.systems.entry(key.clone()).or_default();
        let out = step(entry);
        if entry.is_steady() {
            self.systems.remove(key);
        }
        out
    }

    /// `key`'s lifecycle, if it is not steady.
    pub fn get(&self, key: &ObjectKey) -> Option<&Lifecycle> {
        self.systems.get(key)
    }

    /// The Systems whose publish or wiring retry is due at `now`.
    pub fn retries_due(&self, now: Instant) -> Vec<ObjectKey> {
        self.systems.iter().filter(|(_, l)| l.retry_due(now)).map(|(k, _)| k.clone()).collect()
    }

    /// The deleted Systems whose removal is due at `now`.
    pub fn cleanups_due(&self, now: Instant) -> Vec<ObjectKey> {
        self.systems.iter().filter(|(_, l)| l.cleanup_due(now)).map(|(k, _)| k.clone()).collect()
    }

    /// When something is next due.
    pub fn wake(&self, now: Instant) -> Option<Instant> {
        self.systems.values().filter_map(|l| l.wake(now)).min()
    }

    /// Deleted Systems whose removal has not finished.
    pub fn retiring(&self) -> impl Iterator<Item = &ObjectKey> {
        self.systems.iter().filter(|(_, l)| l.retiring.is_some()).map(|(k, _)| k)
    }

    /// Whether a deleted System's removal waits for no back-off.
    pub fn cleanup_waiting(&self) -> bool {
        self.systems.values().any(|l| l.retiring.as_ref().is_some_and(|(_, at)| at.is_none()))
    }

    /// Whether `key` has a retry scheduled.
    pub fn retrying(&self, key: &ObjectKey) -> bool {
        self.systems.get(key).is_some_and(|l| l.retry.is_some())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::operator::wiring::Applied;

    const BACKOFF: Backoff =
        Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(60), deadline: Duration::MAX };

    fn key() -> ObjectKey {
        ObjectKey::new("team-a", "api")
    }

    fn retirement() -> Retirement {
        Retirement {
            key: key(),
            system_id: "c/team-a/api".into(),
            prefix: "bundles/acme/c/team-a/api".into(),
            tenant: None,
            applied: Applied::default(),
            finalizer: true,
        }
    }

    #[test]
    fn failures_back_off_and_a_success_starts_over() {
        let t0 = Instant::now();
        let mut all = Lifecycles::default();
        let first = all.update(&key(), |l| l.failed(Cause::Publish, t0, &BACKOFF));
        assert!(all.retries_due(t0).is_empty(), "not before the delay");
        assert_eq!(all.retries_due(first), [key()]);
        all.update(&key(), Lifecycle::attempting);
        assert!(all.retries_due(first).is_empty(), "an attempt takes the retry off the schedule");
        let second = all.update(&key(), |l| l.failed(Cause::Publish, first, &BACKOFF));
        assert!(second - first > first - t0, "the delay grows: {:?} then {:?}", first - t0, second - first);
        assert_eq!(all.wake(first), Some(second));
        all.update(&key(), |l| {
            l.attempting();
            l.succeeded();
        });
        assert!(all.get(&key()).is_none(), "steady again: no entry left");
        let again = all.update(&key(), |l| l.failed(Cause::Wiring, second, &BACKOFF));
        assert_eq!(again - second, first - t0, "after a success the back-off starts over");
        assert_eq!(all.get(&key()).and_then(|l| l.retry).map(|(_, c)| c), Some(Cause::Wiring));
    }

    #[test]
    fn a_success_of_one_step_keeps_the_back_off_of_another_that_still_fails() {
        let t0 = Instant::now();
        let mut all = Lifecycles::default();
        all.update(&key(), |l| l.failed(Cause::Wiring, t0, &BACKOFF));
        all.update(&key(), Lifecycle::succeeded);
        assert_eq!(all.get(&key()).map(|l| l.failures), Some(1), "the wiring retry still counts");
    }

    #[test]
    fn deletion_cancels_retries_and_cleanup_backs_off_until_it_succeeds() {
        let t0 = Instant::now();
        let mut all = Lifecycles::default();
        all.update(&key(), |l| l.failed(Cause::Publish, t0, &BACKOFF));
        all.update(&key(), |l| l.retire(retirement()));
        assert!(all.retries_due(t0 + Duration::from_secs(3600)).is_empty(), "no publish of a deleted System");
        assert_eq!(all.cleanups_due(t0), [key()], "removal is due at once");
        assert!(all.cleanup_waiting());
        assert!(all.update(&key(), |l| l.cleanup_failed(t0, &BACKOFF)), "the first failure is told");
        assert!(all.cleanups_due(t0).is_empty());
        assert!(!all.cleanup_waiting());
        let next = all.wake(t0).expect("a retry is scheduled");
        assert_eq!(all.cleanups_due(next), [key()]);
        assert!(
            !all.update(&key(), |l| l.cleanup_failed(next, &BACKOFF)),
            "later failures are not told again"
        );
        assert_eq!(all.retiring().count(), 1);
        all.update(&key(), Lifecycle::retired);
        assert_eq!(all.retiring().count(), 0, "removed: nothing left to do");
    }
}

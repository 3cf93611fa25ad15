//! KIP-227 incremental fetch sessions, sans I/O: which partitions a Fetch request carries, and how
//! the session moves on each outcome.
//!
//! - No session yet (`id 0, epoch 0`): a full request carrying every wanted partition; the broker
//!   answers with a session id (or 0: it made none, and the next request is full again).
//! - In a session (`id N, epoch E > 0`): only partitions whose fetch offset, leader epoch or byte
//!   limit changed since the broker last acknowledged them, plus, as forgotten topics, those in
//!   the session that are no longer wanted (a partition left out of an incremental request stays
//!   in the session: only `ForgottenTopics` removes it).
//! - The session's view changes only after a good response: a failed request leaves it as it was
//!   acknowledged, so a retry recomputes the same diff.
//! - `FETCH_SESSION_ID_NOT_FOUND` on a request asking for a new session means the broker has no
//!   session slots: sessions are disabled for this broker (full fetches from then on). On any
//!   other request it means the broker evicted the session: start a new one.
//! - `INVALID_FETCH_SESSION_EPOCH`, any other top-level error, a transport failure, or a response
//!   naming a partition the session does not hold: the broker's view is unknown, so the next
//!   request is full (same id at epoch 0, which closes the old session and opens a new one).
//! - The epoch goes 1, 2, ..., `i32::MAX`, then 1 again; closing sends epoch -1.
//! - Brokers without sessions (Fetch below v7) get full fetches with id 0 and epoch -1.

use krab_protocol::Uuid;
use krab_protocol::error_code::ErrorCode;
use std::collections::HashMap;
use std::sync::Arc;

/// The first Fetch version with sessions.
pub(crate) const MIN_SESSION_VERSION: i16 = 7;

/// One partition as a Fetch request states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wanted {
    /// The topic name.
    pub(crate) topic: Arc<str>,
    /// The topic id (zero when unknown or for versions before 13).
    pub(crate) topic_id: Uuid,
    /// The partition.
    pub(crate) partition: i32,
    /// The offset to fetch from.
    pub(crate) fetch_offset: i64,
    /// The leader epoch the consumer believes current (-1: unknown).
    pub(crate) current_leader_epoch: i32,
    /// The most bytes to return for this partition.
    pub(crate) max_bytes: i32,
}

type Key = (Arc<str>, i32);

/// A partition to forget: its topic, topic id and index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Forget {
    pub(crate) topic: Arc<str>,
    pub(crate) topic_id: Uuid,
    pub(crate) partition: i32,
}

/// The session part of one Fetch request, plus the state to adopt if it succeeds.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// `SessionId` to send.
    pub(crate) session_id: i32,
    /// `SessionEpoch` to send.
    pub(crate) session_epoch: i32,
    /// Partitions the request carries.
    pub(crate) send: Vec<Wanted>,
    /// Partitions the request removes from the session.
    pub(crate) forget: Vec<Forget>,
    /// The acknowledged view after success.
    next: HashMap<Key, Wanted>,
}

impl Plan {
    /// Whether this is a full request (every wanted partition, no forgotten list).
    pub(crate) fn is_full(&self) -> bool {
        self.session_epoch <= 0
    }
}

/// What happened to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome<'a> {
    /// A response arrived with this top-level error code and session id, naming these partitions.
    Response { error: ErrorCode, session_id: i32, partitions: &'a [(&'a str, i32)] },
    /// No response (connection lost, timeout, decode failure).
    Failed,
}

/// The fetch session with one broker.
#[derive(Debug, Clone, Default)]
pub(crate) struct FetchSession {
    id: i32,
    epoch: i32,
    disabled: bool,
    acked: HashMap<Key, Wanted>,
    /// Why the last [`complete`](Self::complete) lost an established session, if it did.
    lost: Option<&'static str>,
}

fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX { 1 } else { epoch + 1 }
}

impl FetchSession {
    /// A session for a broker whose Fetch version is `version`.
    pub(crate) fn new(version: i16) -> Self {
        FetchSession { disabled: version < MIN_SESSION_VERSION, ..Self::default() }
    }

    /// Whether sessions are off for this broker.
    #[cfg(test)]
    pub(crate) fn is_disabled(&self) -> bool {
        self.disabled
    }

    /// The session id (0: none).
    #[cfg(test)]
    pub(crate) fn id(&self) -> i32 {
        self.id
    }

    /// The epoch the next request will carry.
    #[cfg(test)]
    pub(crate) fn epoch(&self) -> i32 {
        self.epoch
    }

    /// The request for `wanted` (each partition once).
    pub(crate) fn plan(&self, wanted: &[Wanted]) -> Plan {
        let next: HashMap<Key, Wanted> = wanted.iter().map(|w| ((w.topic.clone(), w.partition), w.clone())).collect();
        if self.disabled {
            return Plan { session_id: 0, session_epoch: -1, send: wanted.to_vec(), forget: Vec::new(), next };
        }
        if self.epoch == 0 {
            return Plan { session_id: self.id, session_epoch: 0, send: wanted.to_vec(), forget: Vec::new(), next };
        }
        let send =
            wanted.iter().filter(|w| self.acked.get(&(w.topic.clone(), w.partition)) != Some(*w)).cloned().collect();
        let mut forget: Vec<Forget> = Vec::new();
        for (key, old) in &self.acked {
            let replaced = next.get(key).is_some_and(|w| w.topic_id != old.topic_id);
            if !next.contains_key(key) || replaced {
                forget.push(Forget { topic: old.topic.clone(), topic_id: old.topic_id, partition: old.partition });
            }
        }
        forget.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Plan { session_id: self.id, session_epoch: self.epoch, send, forget, next }
    }

    /// Moves the session on after `plan`'s request ended with `outcome`. Returns whether the
    /// response may be used (false: the session had to be reset and the data is discarded).
    pub(crate) fn complete(&mut self, plan: Plan, outcome: Outcome<'_>) -> bool {
        if self.disabled {
            return matches!(outcome, Outcome::Response { error: ErrorCode::None, .. });
        }
        // An incremental session the broker holds: losing it means a full request next.
        let established = self.id != 0 && self.epoch > 0;
        let lose = |this: &mut Self, why: &'static str| {
            if established {
                this.lost = Some(why);
            }
        };
        match outcome {
            Outcome::Failed => {
                lose(self, "no response");
                self.reset();
                false
            }
            Outcome::Response { error: ErrorCode::FetchSessionIdNotFound, .. } => {
                if plan.session_id == 0 && plan.session_epoch == 0 {
                    tracing::debug!("broker has no fetch session slots; using full fetches");
                    self.disabled = true;
                    self.acked.clear();
                } else {
                    lose(self, ErrorCode::FetchSessionIdNotFound.name());
                    self.id = 0;
                    self.epoch = 0;
                    self.acked.clear();
                }
                false
            }
            Outcome::Response { error: ErrorCode::None, session_id, partitions } => {
                if !plan.is_full() && partitions.iter().any(|(t, p)| !plan.next.contains_key(&(Arc::from(*t), *p))) {
                    tracing::debug!("incremental fetch response names a partition outside the session; resetting");
                    lose(self, "partition outside the session");
                    self.reset();
                    return false;
                }
                if plan.is_full() {
                    if session_id == 0 {
                        // The broker made no session: the next request is full again.
                        self.id = 0;
                        self.epoch = 0;
                        self.acked.clear();
                    } else {
                        self.id = session_id;
                        self.epoch = 1;
                        self.acked = plan.next;
                    }
                } else {
                    self.epoch = next_epoch(self.epoch);
                    self.acked = plan.next;
                }
                true
            }
            Outcome::Response { error, .. } => {
                lose(self, error.name());
                self.reset();
                false
            }
        }
    }

    /// Why the last [`complete`](Self::complete) lost the session the broker held (the next
    /// request is full), once.
    pub(crate) fn take_lost(&mut self) -> Option<&'static str> {
        self.lost.take()
    }

    /// The next request is full: same id at epoch 0 (the broker closes the old session).
    pub(crate) fn reset(&mut self) {
        self.epoch = 0;
        self.acked.clear();
    }

    /// The `(SessionId, SessionEpoch)` of a request closing the session, if there is one.
    pub(crate) fn close(&self) -> Option<(i32, i32)> {
        (!self.disabled && self.id != 0).then_some((self.id, -1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(p: i32, offset: i64) -> Wanted {
        Wanted {
            topic: Arc::from("t"),
            topic_id: Uuid::default(),
            partition: p,
            fetch_offset: offset,
            current_leader_epoch: 1,
            max_bytes: 1024,
        }
    }

    fn ok(session_id: i32) -> Outcome<'static> {
        Outcome::Response { error: ErrorCode::None, session_id, partitions: &[] }
    }

    /// A session established with partitions 0 and 1 at offset 0.
    fn established() -> FetchSession {
        let mut s = FetchSession::new(12);
        let plan = s.plan(&[w(0, 0), w(1, 0)]);
        assert_eq!((plan.session_id, plan.session_epoch, plan.send.len()), (0, 0, 2));
        assert!(s.complete(plan, ok(42)));
        assert_eq!((s.id(), s.epoch()), (42, 1));
        s
    }

    #[test]
    fn losing_an_established_session_is_told_once_and_a_fresh_one_is_not() {
        let mut s = FetchSession::new(12);
        let plan = s.plan(&[w(0, 0)]);
        assert!(!s.complete(plan, Outcome::Failed));
        assert_eq!(s.take_lost(), None, "no session yet: nothing lost");
        let mut s = established();
        let plan = s.plan(&[w(0, 1), w(1, 0)]);
        assert!(!s.complete(plan, Outcome::Failed));
        assert_eq!(s.take_lost(), Some("no response"));
        assert_eq!(s.take_lost(), None, "once");
        let mut s = established();
        let plan = s.plan(&[w(0, 1), w(1, 0)]);
        let evicted = Outcome::Response { error: ErrorCode::FetchSessionIdNotFound, session_id: 0, partitions: &[] };
        assert!(!s.complete(plan, evicted));
        assert_eq!(s.take_lost(), Some("FETCH_SESSION_ID_NOT_FOUND"));
        let mut s = established();
        let plan = s.plan(&[w(0, 1), w(1, 0)]);
        assert!(s.complete(plan, ok(42)));
        assert_eq!(s.take_lost(), None);
    }

    #[test]
    fn incremental_requests_carry_only_changed_partitions() {
        let mut s = established();
        let plan = s.plan(&[w(0, 5), w(1, 0)]);
        assert_eq!((plan.session_id, plan.session_epoch), (42, 1));
        assert_eq!(plan.send, vec![w(0, 5)]);
        assert!(plan.forget.is_empty());
        assert!(s.complete(plan, ok(42)));
        assert_eq!(s.epoch(), 2);
        // Nothing changed: an empty incremental request.
        let plan = s.plan(&[w(0, 5), w(1, 0)]);
        assert!(plan.send.is_empty() && plan.forget.is_empty());
    }

    #[test]
    fn unwanted_partitions_are_forgotten_and_re_added_later() {
        let mut s = established();
        let plan = s.plan(&[w(1, 0)]);
        assert!(plan.send.is_empty());
        assert_eq!(plan.forget, vec![Forget { topic: Arc::from("t"), topic_id: Uuid::default(), partition: 0 }]);
        assert!(s.complete(plan, ok(42)));
        let plan = s.plan(&[w(0, 7), w(1, 0)]);
        assert_eq!(plan.send, vec![w(0, 7)]);
        assert!(plan.forget.is_empty());
    }

    #[test]
    fn a_replaced_topic_id_is_forgotten_and_sent_again() {
        let mut s = established();
        let mut renewed = w(0, 0);
        renewed.topic_id = Uuid([7; 16]);
        let plan = s.plan(&[renewed.clone(), w(1, 0)]);
        assert_eq!(plan.send, vec![renewed]);
        assert_eq!(plan.forget.len(), 1);
        assert_eq!(plan.forget[0].topic_id, Uuid::default());
        assert!(s.complete(plan, ok(42)));
    }

    #[test]
    fn session_state_changes_only_after_a_good_response() {
        let mut s = established();
        let plan = s.plan(&[w(0, 9), w(1, 0)]);
        assert!(!s.complete(plan, Outcome::Failed));
        // A failed request leaves the broker's view unknown: the next request is full.
        assert_eq!((s.id(), s.epoch()), (42, 0));
        let plan = s.plan(&[w(0, 9), w(1, 0)]);
        assert!(plan.is_full());
        assert_eq!(plan.send.len(), 2);
        // The plan itself never mutates the session.
        let mut s = established();
        let _ = s.plan(&[w(0, 9)]);
        let again = s.plan(&[w(0, 9)]);
        assert_eq!(again.forget.len(), 1, "still diffs against the acknowledged view");
        assert!(s.complete(again, ok(42)));
    }

    #[test]
    fn session_id_not_found_on_a_new_session_disables_sessions() {
        let mut s = FetchSession::new(12);
        let plan = s.plan(&[w(0, 0)]);
        let out = Outcome::Response { error: ErrorCode::FetchSessionIdNotFound, session_id: 0, partitions: &[] };
        assert!(!s.complete(plan, out));
        assert!(s.is_disabled());
        let plan = s.plan(&[w(0, 0)]);
        assert_eq!((plan.session_id, plan.session_epoch), (0, -1));
        assert!(s.close().is_none());
    }

    #[test]
    fn session_id_not_found_in_a_session_starts_a_new_one() {
        let mut s = established();
        let plan = s.plan(&[w(0, 3), w(1, 0)]);
        let out = Outcome::Response { error: ErrorCode::FetchSessionIdNotFound, session_id: 0, partitions: &[] };
        assert!(!s.complete(plan, out));
        assert!(!s.is_disabled());
        let plan = s.plan(&[w(0, 3), w(1, 0)]);
        assert_eq!((plan.session_id, plan.session_epoch, plan.send.len()), (0, 0, 2));
    }

    #[test]
    fn invalid_epoch_and_other_errors_reset_to_a_full_request() {
        for code in [ErrorCode::InvalidFetchSessionEpoch, ErrorCode::UnknownServerError, ErrorCode::NotLeaderOrFollower]
        {
            let mut s = established();
            let plan = s.plan(&[w(0, 3), w(1, 0)]);
            let out = Outcome::Response { error: code, session_id: 42, partitions: &[] };
            assert!(!s.complete(plan, out), "{code:?}");
            let plan = s.plan(&[w(0, 3), w(1, 0)]);
            assert_eq!((plan.session_id, plan.session_epoch, plan.send.len()), (42, 0, 2), "{code:?}");
            assert!(!s.is_disabled());
        }
    }

    #[test]
    fn a_response_naming_a_partition_outside_the_session_resets_it() {
        let mut s = established();
        let plan = s.plan(&[w(0, 3), w(1, 0)]);
        let out = Outcome::Response { error: ErrorCode::None, session_id: 42, partitions: &[("t", 0), ("t", 9)] };
        assert!(!s.complete(plan, out));
        assert_eq!(s.epoch(), 0);
        // Partitions of the session omitted from an incremental response are fine.
        let mut s = established();
        let plan = s.plan(&[w(0, 3), w(1, 0)]);
        let out = Outcome::Response { error: ErrorCode::None, session_id: 42, partitions: &[("t", 1)] };
        assert!(s.complete(plan, out));
        assert_eq!(s.epoch(), 2);
    }

    #[test]
    fn a_full_response_without_a_session_keeps_fetching_in_full() {
        let mut s = FetchSession::new(12);
        let plan = s.plan(&[w(0, 0)]);
        assert!(s.complete(plan, ok(0)));
        let plan = s.plan(&[w(0, 4)]);
        assert_eq!((plan.session_id, plan.session_epoch), (0, 0));
    }

    #[test]
    fn the_epoch_wraps_to_one_and_close_sends_minus_one() {
        let mut s = established();
        s.epoch = i32::MAX;
        let plan = s.plan(&[w(0, 0), w(1, 0)]);
        assert_eq!(plan.session_epoch, i32::MAX);
        assert!(s.complete(plan, ok(42)));
        assert_eq!(s.epoch(), 1);
        assert_eq!(s.close(), Some((42, -1)));
    }

    #[test]
    fn old_brokers_get_sessionless_full_fetches() {
        let mut s = FetchSession::new(6);
        assert!(s.is_disabled());
        let plan = s.plan(&[w(0, 0), w(1, 0)]);
        assert_eq!((plan.session_id, plan.session_epoch, plan.send.len()), (0, -1, 2));
        assert!(s.complete(plan, ok(0)));
        let plan = s.plan(&[w(0, 0), w(1, 0)]);
        assert_eq!(plan.send.len(), 2);
    }
}

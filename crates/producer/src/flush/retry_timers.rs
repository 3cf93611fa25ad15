//! Per-partition retry backoff: until when a partition's requeued batch must wait. An entry
//! lives only while it matters: it is dropped once its time has passed or its partition holds
//! nothing more, so the loop's per-turn scans stay as small as the set of partitions backing off.

use krab_buffer::TopicPartition;
use std::collections::HashMap;
use std::time::Instant;

#[derive(Debug, Default)]
pub(super) struct RetryTimers {
    at: HashMap<TopicPartition, Instant>,
}

impl RetryTimers {
    /// `tp` waits until `at`.
    pub(super) fn set(&mut self, tp: TopicPartition, at: Instant) {
        self.at.insert(tp, at);
    }

    /// Whether `tp` is still backing off at `now`.
    pub(super) fn blocks(&self, tp: &TopicPartition, now: Instant) -> bool {
        self.at.get(tp).is_some_and(|t| now < *t)
    }

    /// The earliest backoff ending after `now`.
    pub(super) fn next_after(&self, now: Instant) -> Option<Instant> {
        self.at.values().copied().filter(|t| *t > now).min()
    }

    /// Drops the entries whose time has passed.
    pub(super) fn prune(&mut self, now: Instant) {
        if !self.at.is_empty() {
            self.at.retain(|_, t| *t > now);
        }
    }

    /// Drops `tp`'s entry (its partition holds nothing more).
    pub(super) fn forget(&mut self, tp: &TopicPartition) {
        self.at.remove(tp);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.at.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn entries_go_once_passed_or_forgotten() {
        let now = Instant::now();
        let mut timers = RetryTimers::default();
        let (a, b) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
        timers.set(a.clone(), now + Duration::from_millis(100));
        timers.set(b.clone(), now + Duration::from_millis(300));
        assert!(timers.blocks(&a, now) && timers.blocks(&b, now));
        assert_eq!(timers.next_after(now), Some(now + Duration::from_millis(100)));
        timers.prune(now + Duration::from_millis(100));
        assert_eq!(timers.len(), 1, "a's backoff has passed");
        assert!(!timers.blocks(&a, now));
        timers.forget(&b);
        assert_eq!(timers.len(), 0);
        assert_eq!(timers.next_after(now), None);
    }
}

//! Consumer groups: assignors, the consumer protocol's embedded messages, the I/O-free members
//! (classic eager and cooperative, KIP-848) over one reconcile/commit core, the task that drives
//! them, and the rebalance events.

pub(crate) mod action;
pub mod assignor;
pub(crate) mod core;
#[cfg(test)]
mod core_model;
pub(crate) mod driver;
pub mod events;
pub(crate) mod kip848;
pub(crate) mod machine;
pub(crate) mod protocol;

use assignor::{CooperativeStickyAssignor, PartitionAssignor, RangeAssignor, RoundRobinAssignor};
use std::sync::Arc;

/// The built-in assignor named `name` (`partition.assignment.strategy`).
pub(crate) fn assignor_by_name(name: &str) -> Option<Arc<dyn PartitionAssignor>> {
    match name.trim() {
        "range" => Some(Arc::new(RangeAssignor)),
        "roundrobin" => Some(Arc::new(RoundRobinAssignor)),
        "cooperative-sticky" => Some(Arc::new(CooperativeStickyAssignor)),
        _ => None,
    }
}

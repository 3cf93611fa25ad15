//! Consumer groups, classic protocol: assignors, the consumer protocol's embedded messages, the
//! I/O-free member state machine, the task that drives it, and the rebalance events.

pub mod assignor;
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

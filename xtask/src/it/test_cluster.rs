//! A small trait over the brokers the suite runs (librdkafka's mock, tansu, Apache Kafka), so a
//! scenario can run on any broker that has the capabilities it needs, and says which it lacks.
//!
//! What each broker can and cannot show:
//! - **mock** moves leaders and takes brokers down by command, counts requests, injects errors;
//!   but it fakes replication, does not deduplicate a non-transactional idempotent producer's
//!   retries, and a "down" broker keeps its leaderships until told otherwise.
//! - **tansu** is one real broker with real storage; no leader moves, no faults.
//! - **kafka** is Apache Kafka itself: real replication, idempotence enforced, a killed broker is
//!   fenced and failed over by the controller; its proxies count requests and inject faults.

use crate::brokers::kafka::KafkaCluster;
use crate::brokers::mock::MockCluster;
use anyhow::{Result, bail};
use std::collections::BTreeMap;

/// What a broker can do for a scenario.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Caps {
    /// Leaders move on command.
    pub(crate) leader_moves: bool,
    /// A broker can be taken down and brought back.
    pub(crate) broker_down: bool,
    /// A broker can be frozen (SIGSTOP) and continued.
    pub(crate) freeze: bool,
    /// Connections can be cut, blackholed or delayed at the wire.
    pub(crate) wire_faults: bool,
    /// The broker rejects idempotent duplicates (so "duplicated 0" can be asserted).
    pub(crate) dedupes: bool,
    /// Requests are counted at the cluster, independently of the client.
    pub(crate) counts_requests: bool,
}

impl Caps {
    /// Every capability (what Apache Kafka behind the proxies has).
    pub(crate) const ALL: Caps = Caps {
        leader_moves: true,
        broker_down: true,
        freeze: true,
        wire_faults: true,
        dedupes: true,
        counts_requests: true,
    };

    /// The capabilities `need` asks for that these lack, by name.
    pub(crate) fn missing(&self, need: &Caps) -> Vec<&'static str> {
        let pairs = [
            (need.leader_moves, self.leader_moves, "leader moves"),
            (need.broker_down, self.broker_down, "broker down/up"),
            (need.freeze, self.freeze, "freezing a broker"),
            (need.wire_faults, self.wire_faults, "wire faults"),
            (need.dedupes, self.dedupes, "idempotent deduplication"),
            (need.counts_requests, self.counts_requests, "request counts"),
        ];
        pairs.into_iter().filter(|(n, have, _)| *n && !*have).map(|(_, _, name)| name).collect()
    }
}

/// A broker under test, driven synchronously (scenarios call it from the blocking pool).
pub(crate) trait TestCluster: Send + Sync {
    /// "mock", "tansu" or "kafka".
    fn name(&self) -> &'static str;
    /// Where clients connect.
    fn bootstrap(&self) -> String;
    /// What it can do.
    fn caps(&self) -> Caps;
    /// Requests of `api_key` counted at the cluster since it started.
    fn requests(&self, api_key: i16) -> Result<u64>;
    /// Partition → leader id (-1: none), as the cluster has it.
    fn leaders(&self, topic: &str) -> Result<BTreeMap<i32, i32>>;
    /// Moves each partition's leader to the given broker.
    fn move_leaders(&self, topic: &str, moves: &BTreeMap<i32, i32>) -> Result<()>;
    /// Takes a broker down (Kafka: `kill -9`).
    fn take_down(&self, broker: i32) -> Result<()>;
    /// Brings a downed broker back.
    fn bring_up(&self, broker: i32) -> Result<()>;
}

impl TestCluster for MockCluster {
    fn name(&self) -> &'static str {
        "mock"
    }
    fn bootstrap(&self) -> String {
        MockCluster::bootstrap(self).to_owned()
    }
    fn caps(&self) -> Caps {
        Caps { leader_moves: true, broker_down: true, counts_requests: true, ..Caps::default() }
    }
    fn requests(&self, api_key: i16) -> Result<u64> {
        self.request_count(api_key)
    }
    fn leaders(&self, _topic: &str) -> Result<BTreeMap<i32, i32>> {
        bail!("the mock cluster does not report leaders; read them from a client's metadata")
    }
    fn move_leaders(&self, topic: &str, moves: &BTreeMap<i32, i32>) -> Result<()> {
        moves.iter().try_for_each(|(&p, &to)| self.set_leader(topic, p, to))
    }
    fn take_down(&self, broker: i32) -> Result<()> {
        self.broker_down(broker)
    }
    fn bring_up(&self, broker: i32) -> Result<()> {
        self.broker_up(broker)
    }
}

impl TestCluster for KafkaCluster {
    fn name(&self) -> &'static str {
        "kafka"
    }
    fn bootstrap(&self) -> String {
        KafkaCluster::bootstrap(self)
    }
    fn caps(&self) -> Caps {
        Caps::ALL
    }
    fn requests(&self, api_key: i16) -> Result<u64> {
        Ok(KafkaCluster::requests(self, api_key))
    }
    fn leaders(&self, topic: &str) -> Result<BTreeMap<i32, i32>> {
        KafkaCluster::leaders(self, topic)
    }
    fn move_leaders(&self, topic: &str, moves: &BTreeMap<i32, i32>) -> Result<()> {
        KafkaCluster::move_leaders(self, topic, moves)
    }
    fn take_down(&self, broker: i32) -> Result<()> {
        self.kill(broker)
    }
    fn bring_up(&self, broker: i32) -> Result<()> {
        self.restart(broker)
    }
}

/// Fails with the capabilities `cluster` lacks for a scenario that needs `need`, by name.
pub(crate) fn require(cluster: &dyn TestCluster, need: Caps) -> Result<()> {
    let missing = cluster.caps().missing(&need);
    if missing.is_empty() {
        Ok(())
    } else {
        bail!("{} cannot run this scenario: it lacks {}", cluster.name(), missing.join(", "))
    }
}

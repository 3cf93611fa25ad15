//! A cluster of fake brokers sharing one state.

use crate::broker::{FakeBroker, Handler, Stats};
use crate::log::{PartitionLog, ProduceStep};
use crate::reply::Reply;
use crate::state::{ClusterState, FakePartition};
use crate::transport::FakeTransport;
use crate::{FAKE_PORT, lock};
use krab_cluster::{BrokerAddr, Cluster, ClusterConfig, ClusterError};
use krab_protocol::ApiKey;
use krab_protocol::messages::{AnyRequest, RequestHeader};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::task::JoinHandle;

/// Fake brokers `1..=n` sharing one metadata state, reachable through [`FakeCluster::transport`].
pub struct FakeCluster {
    state: Arc<Mutex<ClusterState>>,
    brokers: BTreeMap<i32, FakeBroker>,
    transport: FakeTransport,
    stats: Arc<Stats>,
    listeners: Mutex<HashMap<i32, JoinHandle<()>>>,
}

impl FakeCluster {
    /// `n` in-memory brokers, `broker-<id>:9092`.
    pub fn new(n: i32) -> Self {
        let addrs = (1..=n).map(|id| (id, BrokerAddr::new(format!("broker-{id}"), FAKE_PORT))).collect();
        let cluster = Self::with_addrs(addrs);
        for (id, b) in &cluster.brokers {
            cluster.transport.add(cluster.addr(*id), b.clone());
        }
        cluster
    }

    /// `n` brokers listening on loopback TCP ports (use `Cluster::connect`).
    pub async fn new_tcp(n: i32) -> Self {
        let mut listeners = Vec::new();
        let mut addrs = BTreeMap::new();
        for id in 1..=n {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
            let port = l.local_addr().expect("local addr").port();
            addrs.insert(id, BrokerAddr::new("127.0.0.1", port));
            listeners.push((id, l));
        }
        let cluster = Self::with_addrs(addrs);
        for (id, l) in listeners {
            let task = cluster.brokers[&id].serve_tcp(l);
            lock(&cluster.listeners).insert(id, task);
        }
        cluster
    }

    fn with_addrs(addrs: BTreeMap<i32, BrokerAddr>) -> Self {
        let state = Arc::new(Mutex::new(ClusterState::new(addrs.clone())));
        let stats = Arc::new(Stats::default());
        let brokers =
            addrs.keys().map(|&id| (id, FakeBroker::in_cluster(id, state.clone(), Some(stats.clone())))).collect();
        Self { state, brokers, transport: FakeTransport::default(), stats, listeners: Mutex::new(HashMap::new()) }
    }

    /// Broker `id`.
    pub fn broker(&self, id: i32) -> &FakeBroker {
        &self.brokers[&id]
    }

    /// Broker `id`'s advertised address.
    pub fn addr(&self, id: i32) -> BrokerAddr {
        self.state().brokers[&id].clone()
    }

    /// The in-memory transport reaching every broker.
    pub fn transport(&self) -> FakeTransport {
        self.transport.clone()
    }

    /// A cluster config bootstrapping from broker 1.
    pub fn config(&self) -> ClusterConfig {
        ClusterConfig::new(vec![self.addr(1)])
    }

    /// `Cluster::connect_with` over the in-memory transport.
    pub async fn connect(&self, config: ClusterConfig) -> Result<Cluster, ClusterError> {
        Cluster::connect_with(config, self.transport()).await
    }

    /// The shared metadata state.
    pub fn state(&self) -> MutexGuard<'_, ClusterState> {
        lock(&self.state)
    }

    /// Sets the same handler on every broker.
    pub fn set_handler<F>(&self, handler: F)
    where
        F: Fn(RequestHeader, AnyRequest) -> Reply + Send + Sync + 'static,
    {
        let handler: Handler = Arc::new(handler);
        for b in self.brokers.values() {
            *lock(&b.shared.handler) = Some(handler.clone());
        }
    }

    /// Back to the default handlers on every broker.
    pub fn clear_handler(&self) {
        for b in self.brokers.values() {
            b.clear_handler();
        }
    }

    /// Requests of `api` received by all brokers together.
    pub fn requests(&self, api: ApiKey) -> u64 {
        self.stats.count(api)
    }

    /// Waits until all brokers together have received `n` requests of `api`.
    pub async fn wait_requests(&self, api: ApiKey, n: u64) {
        self.stats.wait_for(api, n).await;
    }

    /// Creates a topic with leaders round-robin over the brokers (partition `p` on broker
    /// `p % n + 1`), epoch 0.
    pub fn create_topic(&self, name: &str, partitions: i32) {
        self.state().create_topic(name, partitions);
    }

    /// Sets a partition's leader and epoch as the brokers will report them.
    pub fn set_partition(&self, topic: &str, partition: i32, leader: i32, epoch: i32) {
        let mut s = self.state();
        let p = &mut s.topics.get_mut(topic).expect("topic")[partition as usize];
        p.leader = leader;
        p.epoch = epoch;
        p.replicas = vec![leader];
    }

    /// Moves a partition's leadership to `leader`, bumping its epoch; returns the new epoch.
    pub fn move_leader(&self, topic: &str, partition: i32, leader: i32) -> i32 {
        let epoch = self.partition(topic, partition).epoch + 1;
        self.set_partition(topic, partition, leader, epoch);
        epoch
    }

    /// A partition as the brokers report it.
    pub fn partition(&self, topic: &str, partition: i32) -> FakePartition {
        self.state().topics[topic][partition as usize].clone()
    }

    /// While down, connecting to broker `id` is refused (existing connections are dropped).
    pub fn set_down(&self, id: i32, down: bool) {
        self.transport.set_down(&self.addr(id), down);
        if down {
            self.broker(id).kill_connections();
        }
    }

    /// While hung, connecting to broker `id` never completes.
    pub fn set_hang(&self, id: i32, hang: bool) {
        self.transport.set_hang(&self.addr(id), hang);
    }

    /// Connection attempts made to broker `id` through the in-memory transport.
    pub fn connects(&self, id: i32) -> u64 {
        self.transport.connects(&self.addr(id))
    }

    /// TCP clusters: closes broker `id`'s listener, so that connecting to it is refused.
    pub async fn stop_listening(&self, id: i32) {
        let task = lock(&self.listeners).remove(&id);
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        for task in lock(&self.listeners).values() {
            task.abort();
        }
    }
}

impl FakeCluster {
    /// The log of a partition as the brokers hold it.
    pub fn log(&self, topic: &str, partition: i32) -> PartitionLog {
        self.state().log(topic, partition)
    }

    /// Queues `steps` for the next Produce batches of a partition (one step per batch).
    pub fn script_produce(&self, topic: &str, partition: i32, steps: impl IntoIterator<Item = ProduceStep>) {
        self.state().script_produce(topic, partition, steps);
    }

    /// Makes the brokers answer Metadata for `topic` with `error_code` and no partitions
    /// (`None`: answer it normally again).
    pub fn set_topic_error(&self, topic: &str, error_code: Option<i16>) {
        let mut s = self.state();
        match error_code {
            Some(code) => s.topic_errors.insert(topic.to_string(), code),
            None => s.topic_errors.remove(topic),
        };
    }

    /// Auto-creates unknown topics with `partitions` partitions (see
    /// [`ClusterState::auto_create`]); `None`: unknown topics stay unknown.
    pub fn set_auto_create(&self, partitions: Option<i32>) {
        self.state().auto_create = partitions;
    }

    /// Answers the next InitProducerId requests with these error codes, in order.
    pub fn fail_init_producer_id(&self, codes: impl IntoIterator<Item = i16>) {
        self.state().init_producer_id_errors.extend(codes);
    }
}

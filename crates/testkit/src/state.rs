//! The state every broker of a fake cluster shares: metadata, partition logs, producer ids, and
//! the default answer to each request.

use crate::log::{PartitionLog, ProduceStep};
use crate::reply::{IntoAny, Reply};
use krab_cluster::BrokerAddr;
use krab_protocol::ApiKey;
use krab_protocol::messages::api_versions::ApiVersion;
use krab_protocol::messages::create_topics::CreatableTopicResult;
use krab_protocol::messages::delete_topics::DeletableTopicResult;
use krab_protocol::messages::metadata::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};
use krab_protocol::messages::produce::{PartitionProduceResponse, TopicProduceResponse};
use krab_protocol::messages::{
    AnyRequest, ApiVersionsResponse, CreateTopicsResponse, DeleteTopicsResponse, InitProducerIdRequest,
    InitProducerIdResponse, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse, RequestHeader,
};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const LEADER_NOT_AVAILABLE: i16 = 5;

/// One partition as the fake cluster's metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakePartition {
    /// Leader broker id (-1: none).
    pub leader: i32,
    /// Leader epoch.
    pub epoch: i32,
    /// Replicas (also reported as the ISR).
    pub replicas: Vec<i32>,
}

/// The metadata every broker of a fake cluster serves.
#[derive(Debug, Clone)]
pub struct ClusterState {
    /// Brokers: id and advertised address.
    pub brokers: BTreeMap<i32, BrokerAddr>,
    /// The controller id.
    pub controller: i32,
    /// The cluster id.
    pub cluster_id: String,
    /// Topics by name.
    pub topics: BTreeMap<String, Vec<FakePartition>>,
    /// The version ranges advertised in ApiVersions, by API key.
    pub api_ranges: BTreeMap<i16, (i16, i16)>,
    /// Topics answered with this error code and no partitions (e.g. LEADER_NOT_AVAILABLE, 5).
    pub topic_errors: BTreeMap<String, i16>,
    /// `Some(n)`: a Metadata request allowing auto-creation that names an unknown topic creates
    /// it with `n` partitions, and, as Apache Kafka does, answers LEADER_NOT_AVAILABLE with no
    /// partitions that time; the next request sees the topic. `None`: unknown topics are
    /// UNKNOWN_TOPIC_OR_PARTITION.
    pub auto_create: Option<i32>,
    /// Partition logs, by topic and partition.
    pub logs: BTreeMap<(String, i32), PartitionLog>,
    /// Error codes the next InitProducerId requests are answered with, in order.
    pub init_producer_id_errors: VecDeque<i16>,
    /// The producer id the next InitProducerId without one gets.
    pub next_producer_id: i64,
}

impl ClusterState {
    pub(crate) fn new(brokers: BTreeMap<i32, BrokerAddr>) -> Self {
        Self {
            controller: brokers.keys().next().copied().unwrap_or(-1),
            brokers,
            cluster_id: "fake-cluster".into(),
            topics: BTreeMap::new(),
            api_ranges: ApiKey::ALL.iter().map(|k| (*k as i16, (k.versions().min, k.versions().max))).collect(),
            topic_errors: BTreeMap::new(),
            auto_create: None,
            logs: BTreeMap::new(),
            init_producer_id_errors: VecDeque::new(),
            next_producer_id: 1000,
        }
    }

    /// The log of a partition (empty if nothing was appended).
    pub fn log(&self, topic: &str, partition: i32) -> PartitionLog {
        self.logs.get(&(topic.to_string(), partition)).cloned().unwrap_or_default()
    }

    /// Queues `steps` for the next Produce batches of a partition, one step per batch.
    pub fn script_produce(&mut self, topic: &str, partition: i32, steps: impl IntoIterator<Item = ProduceStep>) {
        self.logs.entry((topic.to_string(), partition)).or_default().script.extend(steps);
    }

    /// Steps of a partition's script not used yet.
    pub fn script_left(&self, topic: &str, partition: i32) -> usize {
        self.logs.get(&(topic.to_string(), partition)).map_or(0, |l| l.script.len())
    }

    /// Adds (or replaces) a topic whose leaders are spread round-robin over the brokers, epoch 0.
    pub fn create_topic(&mut self, name: &str, partitions: i32) {
        let ids: Vec<i32> = self.brokers.keys().copied().collect();
        let parts = (0..partitions.max(1))
            .map(|p| {
                let leader = ids[p as usize % ids.len()];
                FakePartition { leader, epoch: 0, replicas: vec![leader] }
            })
            .collect();
        self.topics.insert(name.to_string(), parts);
    }

    /// The Metadata response a broker of this cluster gives at `version`.
    /// With [`auto_create`](Self::auto_create), creates the unknown topics it names (answering
    /// them LEADER_NOT_AVAILABLE this time).
    pub fn metadata_response(&mut self, request: &MetadataRequest, version: i16) -> MetadataResponse {
        let names: Vec<String> = match &request.topics {
            None => self.topics.keys().cloned().collect(),
            Some(list) if list.is_empty() && version == 0 => self.topics.keys().cloned().collect(),
            Some(list) => list.iter().filter_map(|t| t.name.clone()).collect(),
        };
        let mut created = Vec::new();
        let topics = names
            .into_iter()
            .map(|name| match self.topics.get(&name) {
                _ if self.topic_errors.contains_key(&name) => MetadataResponseTopic {
                    error_code: self.topic_errors[&name],
                    name: Some(name),
                    ..Default::default()
                },
                None if self.auto_create.is_some() && request.allow_auto_topic_creation => {
                    created.push(name.clone());
                    MetadataResponseTopic { error_code: LEADER_NOT_AVAILABLE, name: Some(name), ..Default::default() }
                }
                Some(parts) => MetadataResponseTopic {
                    name: Some(name),
                    partitions: parts
                        .iter()
                        .enumerate()
                        .map(|(i, p)| MetadataResponsePartition {
                            error_code: if p.leader < 0 { 5 } else { 0 },
                            partition_index: i as i32,
                            leader_id: p.leader,
                            leader_epoch: if version >= 7 { p.epoch } else { -1 },
                            replica_nodes: p.replicas.clone(),
                            isr_nodes: p.replicas.clone(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                },
                None => MetadataResponseTopic {
                    error_code: UNKNOWN_TOPIC_OR_PARTITION,
                    name: Some(name),
                    ..Default::default()
                },
            })
            .collect();
        for name in created {
            self.create_topic(&name, self.auto_create.unwrap_or(1));
        }
        MetadataResponse {
            brokers: self
                .brokers
                .iter()
                .map(|(id, addr)| MetadataResponseBroker {
                    node_id: *id,
                    host: addr.host.clone(),
                    port: i32::from(addr.port),
                    ..Default::default()
                })
                .collect(),
            cluster_id: (version >= 2).then(|| self.cluster_id.clone()),
            controller_id: if version >= 1 { self.controller } else { -1 },
            topics,
            ..Default::default()
        }
    }

    fn api_versions_reply(&self, version: i16) -> Reply {
        let key = ApiKey::ApiVersions as i16;
        let (min, max) = self.api_ranges.get(&key).copied().unwrap_or((0, 0));
        if version > max {
            // KIP-511: UNSUPPORTED_VERSION with a version-0 body listing the ApiVersions versions
            // this broker supports.
            let body = ApiVersionsResponse {
                error_code: 35,
                api_keys: vec![ApiVersion { api_key: key, min_version: min, max_version: max, ..Default::default() }],
                ..Default::default()
            };
            return Reply::RespondAt(body.into_any(), 0);
        }
        Reply::respond(ApiVersionsResponse {
            api_keys: self
                .api_ranges
                .iter()
                .map(|(&api_key, &(min_version, max_version))| ApiVersion {
                    api_key,
                    min_version,
                    max_version,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    /// The default answer of broker `broker` to a request.
    pub(crate) fn default_reply(&mut self, broker: i32, header: &RequestHeader, request: &AnyRequest) -> Reply {
        let version = header.request_api_version;
        match request {
            AnyRequest::InitProducerId(r) => self.init_producer_id(r),
            AnyRequest::Produce(p) => self.produce(broker, p),
            AnyRequest::ApiVersions(_) => self.api_versions_reply(version),
            AnyRequest::Metadata(m) => Reply::respond(self.metadata_response(m, version)),
            AnyRequest::CreateTopics(c) => {
                let mut topics = Vec::new();
                for t in &c.topics {
                    let error_code = if self.topics.contains_key(&t.name) {
                        36
                    } else {
                        if !c.validate_only {
                            self.create_topic(&t.name, t.num_partitions);
                        }
                        0
                    };
                    topics.push(CreatableTopicResult { name: t.name.clone(), error_code, ..Default::default() });
                }
                Reply::respond(CreateTopicsResponse { topics, ..Default::default() })
            }
            AnyRequest::DeleteTopics(d) => {
                let names: Vec<String> = if version >= 6 {
                    d.topics.iter().filter_map(|t| t.name.clone()).collect()
                } else {
                    d.topic_names.clone()
                };
                let responses = names
                    .into_iter()
                    .map(|name| {
                        let error_code = if self.topics.remove(&name).is_some() { 0 } else { 3 };
                        DeletableTopicResult { name: Some(name), error_code, ..Default::default() }
                    })
                    .collect();
                Reply::respond(DeleteTopicsResponse { responses, ..Default::default() })
            }
            _ => Reply::Close,
        }
    }

    fn init_producer_id(&mut self, request: &InitProducerIdRequest) -> Reply {
        if let Some(error_code) = self.init_producer_id_errors.pop_front() {
            return Reply::respond(InitProducerIdResponse {
                error_code,
                producer_id: -1,
                producer_epoch: -1,
                ..Default::default()
            });
        }
        let (producer_id, producer_epoch) = if request.producer_id >= 0 && request.producer_epoch >= 0 {
            // KIP-360: the same producer id, the next epoch.
            (request.producer_id, request.producer_epoch.saturating_add(1))
        } else {
            self.next_producer_id += 1;
            (self.next_producer_id - 1, 0)
        };
        Reply::respond(InitProducerIdResponse { producer_id, producer_epoch, ..Default::default() })
    }

    /// Appends each partition's records (or follows its script) and answers; the whole request
    /// hangs, is delayed or drops the connection if any of its partitions' steps says so.
    fn produce(&mut self, broker: i32, request: &ProduceRequest) -> Reply {
        let mut delay = Duration::ZERO;
        let mut hang = false;
        let mut drop_connection = false;
        let mut responses = Vec::new();
        for topic in &request.topic_data {
            let mut partition_responses = Vec::new();
            for data in &topic.partition_data {
                let leader = self.topics.get(&topic.name).and_then(|p| p.get(data.index as usize)).map(|p| p.leader);
                let (error_code, base_offset) = match leader {
                    None => (UNKNOWN_TOPIC_OR_PARTITION, -1),
                    Some(l) if l != broker => (NOT_LEADER_OR_FOLLOWER, -1),
                    Some(_) => {
                        let log = self.logs.entry((topic.name.clone(), data.index)).or_default();
                        match log.script.pop_front() {
                            Some(ProduceStep::Error(code)) => (code, -1),
                            Some(ProduceStep::Drop) => {
                                drop_connection = true;
                                (0, -1)
                            }
                            step => {
                                match step {
                                    Some(ProduceStep::Delay(d)) => delay = delay.max(d),
                                    Some(ProduceStep::AppendThenHang) => hang = true,
                                    Some(ProduceStep::AppendThenDrop) => drop_connection = true,
                                    _ => {}
                                }
                                log.append(data.records.as_ref())
                            }
                        }
                    }
                };
                partition_responses.push(PartitionProduceResponse {
                    index: data.index,
                    error_code,
                    base_offset,
                    log_append_time_ms: -1,
                    ..Default::default()
                });
            }
            responses.push(TopicProduceResponse {
                name: topic.name.clone(),
                partition_responses,
                ..Default::default()
            });
        }
        if drop_connection {
            return Reply::Close;
        }
        if hang || request.acks == 0 {
            return Reply::Never;
        }
        let reply = Reply::respond(ProduceResponse { responses, ..Default::default() });
        if delay.is_zero() { reply } else { Reply::after(delay, reply) }
    }
}

//! Where each admin call goes, against the in-memory fake cluster: the controller, each
//! partition's leader, a group's coordinator, a given broker, every broker; and how answers map
//! back to the resources asked about.

use krab_admin::{
    AclBinding, AclFilter, AclOperation, AclPermission, Admin, AdminConfig, AdminError, ConfigResource, ConfigSource,
    ErrorCode, NewTopic, OffsetSpec, PatternType, ResourceType, TopicPartition,
};
use krab_protocol::ApiKey;
use krab_protocol::messages::create_acls::AclCreationResult;
use krab_protocol::messages::delete_acls::{DeleteAclsFilterResult, DeleteAclsMatchingAcl};
use krab_protocol::messages::delete_groups::DeletableGroupResult;
use krab_protocol::messages::delete_records::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use krab_protocol::messages::describe_configs::{DescribeConfigsResourceResult, DescribeConfigsResult};
use krab_protocol::messages::describe_groups::{DescribedGroup, DescribedGroupMember};
use krab_protocol::messages::find_coordinator::Coordinator;
use krab_protocol::messages::list_groups::ListedGroup;
use krab_protocol::messages::list_offsets::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use krab_protocol::messages::{
    AnyRequest, CreateAclsResponse, DeleteAclsResponse, DeleteGroupsResponse, DeleteRecordsResponse,
    DescribeConfigsResponse, DescribeGroupsResponse, FindCoordinatorResponse, ListGroupsResponse, ListOffsetsResponse,
    RequestHeader,
};
use krab_testkit::{FAKE_PORT, FakeBroker, FakeCluster, Reply};
use std::collections::BTreeMap;
use std::sync::Arc;

async fn admin(fake: &FakeCluster) -> Admin {
    let cluster = fake.connect(fake.config()).await.expect("connect to the fake cluster");
    Admin::with_cluster(cluster, &AdminConfig::default())
}

/// Sets a handler on each broker that knows which broker it runs on (and can read or change
/// the shared state through it).
fn on_brokers<F>(fake: &FakeCluster, handler: F)
where
    F: Fn(&FakeBroker, &RequestHeader, &AnyRequest) -> Reply + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    let ids: Vec<i32> = fake.state().brokers.keys().copied().collect();
    for id in ids {
        let broker = fake.broker(id).clone();
        let handler = handler.clone();
        fake.broker(id).set_handler(move |header, request| handler(&broker, &header, &request));
    }
}

fn leader_of(broker: &FakeBroker, topic: &str, partition: i32) -> Option<i32> {
    broker.state().topics.get(topic).and_then(|ps| ps.get(partition as usize)).map(|p| p.leader)
}

/// DeleteRecords and ListOffsets as a real leader answers them: NOT_LEADER_OR_FOLLOWER for a
/// partition this broker does not lead; the new log start is the offset asked, and listed
/// offsets are `100 + partition`.
fn answer_at_leader(broker: &FakeBroker, request: &AnyRequest) -> Reply {
    let me = broker.id();
    match request {
        AnyRequest::DeleteRecords(r) => Reply::respond(DeleteRecordsResponse {
            topics: r
                .topics
                .iter()
                .map(|t| DeleteRecordsTopicResult {
                    name: t.name.clone(),
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| {
                            let led = leader_of(broker, &t.name, p.partition_index) == Some(me);
                            DeleteRecordsPartitionResult {
                                partition_index: p.partition_index,
                                low_watermark: if led { p.offset } else { -1 },
                                error_code: if led { 0 } else { 6 },
                                ..Default::default()
                            }
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        AnyRequest::ListOffsets(r) => Reply::respond(ListOffsetsResponse {
            topics: r
                .topics
                .iter()
                .map(|t| ListOffsetsTopicResponse {
                    name: t.name.clone(),
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| {
                            let led = leader_of(broker, &t.name, p.partition_index) == Some(me);
                            ListOffsetsPartitionResponse {
                                partition_index: p.partition_index,
                                error_code: if led { 0 } else { 6 },
                                offset: if led { 100 + i64::from(p.partition_index) } else { -1 },
                                leader_epoch: if led { 0 } else { -1 },
                                ..Default::default()
                            }
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        _ => Reply::Default,
    }
}

/// The partitions broker `id` was asked about in its `api` requests, request by request.
fn asked_partitions(fake: &FakeCluster, id: i32, api: ApiKey) -> Vec<Vec<TopicPartition>> {
    fake.broker(id)
        .received()
        .into_iter()
        .filter_map(|(_, r)| match (api, r) {
            (ApiKey::DeleteRecords, AnyRequest::DeleteRecords(r)) => Some(
                r.topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| TopicPartition::new(t.name.clone(), p.partition_index)))
                    .collect(),
            ),
            (ApiKey::ListOffsets, AnyRequest::ListOffsets(r)) => Some(
                r.topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| TopicPartition::new(t.name.clone(), p.partition_index)))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn create_topics_goes_to_the_controller_only() {
    let fake = FakeCluster::new(3);
    // Not the bootstrap broker (1), so "any broker" would be caught.
    fake.state().controller = 2;
    let admin = admin(&fake).await;

    let created = admin.create_topics(&[NewTopic::new("orders", 3, 1), NewTopic::new("audit", 1, 1)]).await.unwrap();
    assert_eq!(created.keys().collect::<Vec<_>>(), ["audit", "orders"]);
    assert!(created.values().all(Result::is_ok), "{created:?}");
    assert_eq!(fake.state().topics["orders"].len(), 3);
    assert_eq!(fake.broker(2).requests(ApiKey::CreateTopics), 1);
    assert_eq!(fake.broker(1).requests(ApiKey::CreateTopics), 0);
    assert_eq!(fake.broker(3).requests(ApiKey::CreateTopics), 0);

    // Deleting goes to the controller too.
    let deleted = admin.delete_topics(&["audit"]).await.unwrap();
    assert!(deleted["audit"].is_ok(), "{deleted:?}");
    assert_eq!(fake.broker(2).requests(ApiKey::DeleteTopics), 1);
    assert_eq!(fake.requests(ApiKey::DeleteTopics), 1);
    assert!(!fake.state().topics.contains_key("audit"));
}

#[tokio::test(start_paused = true)]
async fn create_topics_reports_each_topic_on_its_own() {
    let fake = FakeCluster::new(3);
    fake.create_topic("existing", 1);
    let admin = admin(&fake).await;

    let created = admin.create_topics(&[NewTopic::new("existing", 1, 1), NewTopic::new("fresh", 2, 1)]).await.unwrap();
    assert_eq!(created.len(), 2);
    assert!(created["fresh"].is_ok(), "{created:?}");
    let e = created["existing"].as_ref().unwrap_err();
    assert_eq!(e.error_code(), Some(ErrorCode::TopicAlreadyExists));
    assert!(matches!(e, AdminError::Broker { api: ApiKey::CreateTopics, .. }), "{e:?}");
    assert!(e.to_string().contains("topic existing"), "{e}");
    assert_eq!(fake.state().topics["fresh"].len(), 2);
    // TOPIC_ALREADY_EXISTS is final: one request in all.
    assert_eq!(fake.requests(ApiKey::CreateTopics), 1);
}

#[tokio::test(start_paused = true)]
async fn delete_records_and_list_offsets_go_to_each_partitions_leader() {
    let fake = FakeCluster::new(3);
    // Partition p is led by broker p % 3 + 1; a second topic's partition 0 by broker 3.
    fake.create_topic("t", 3);
    fake.create_topic("u", 1);
    fake.set_partition("u", 0, 3, 0);
    on_brokers(&fake, |broker, _, request| answer_at_leader(broker, request));
    let admin = admin(&fake).await;

    let tp = |t: &str, p| TopicPartition::new(t, p);
    let deleted =
        admin.delete_records(&[(tp("t", 0), 10), (tp("t", 1), 11), (tp("t", 2), 12), (tp("u", 0), 5)]).await.unwrap();
    assert_eq!(deleted.len(), 4);
    assert_eq!(*deleted[&tp("t", 0)].as_ref().unwrap(), 10);
    assert_eq!(*deleted[&tp("t", 1)].as_ref().unwrap(), 11);
    assert_eq!(*deleted[&tp("t", 2)].as_ref().unwrap(), 12);
    assert_eq!(*deleted[&tp("u", 0)].as_ref().unwrap(), 5);
    // One request per leader, each with only the partitions it leads.
    assert_eq!(asked_partitions(&fake, 1, ApiKey::DeleteRecords), [vec![tp("t", 0)]]);
    assert_eq!(asked_partitions(&fake, 2, ApiKey::DeleteRecords), [vec![tp("t", 1)]]);
    assert_eq!(asked_partitions(&fake, 3, ApiKey::DeleteRecords), [vec![tp("t", 2), tp("u", 0)]]);

    let listed = admin
        .list_offsets(&[
            (tp("t", 0), OffsetSpec::Latest),
            (tp("t", 1), OffsetSpec::Earliest),
            (tp("u", 0), OffsetSpec::Latest),
        ])
        .await
        .unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[&tp("t", 0)].as_ref().unwrap().offset, 100);
    assert_eq!(listed[&tp("t", 1)].as_ref().unwrap().offset, 101);
    assert_eq!(listed[&tp("u", 0)].as_ref().unwrap().offset, 100);
    assert_eq!(listed[&tp("u", 0)].as_ref().unwrap().leader_epoch, Some(0));
    assert_eq!(asked_partitions(&fake, 1, ApiKey::ListOffsets), [vec![tp("t", 0)]]);
    assert_eq!(asked_partitions(&fake, 2, ApiKey::ListOffsets), [vec![tp("t", 1)]]);
    assert_eq!(asked_partitions(&fake, 3, ApiKey::ListOffsets), [vec![tp("u", 0)]]);
    // The specs travel with their partitions.
    let timestamps: Vec<i64> = fake
        .broker(2)
        .received()
        .into_iter()
        .filter_map(|(_, r)| match r {
            AnyRequest::ListOffsets(r) => Some(r.topics[0].partitions[0].timestamp),
            _ => None,
        })
        .collect();
    assert_eq!(timestamps, [-2], "Earliest is timestamp -2");
}

#[tokio::test(start_paused = true)]
async fn a_partition_the_metadata_does_not_know_fails_at_once() {
    let fake = FakeCluster::new(2);
    fake.create_topic("t", 1);
    on_brokers(&fake, |broker, _, request| answer_at_leader(broker, request));
    let admin = admin(&fake).await;

    let tp = |t: &str, p| TopicPartition::new(t, p);
    let deleted = admin.delete_records(&[(tp("t", 0), 1), (tp("t", 7), 1), (tp("nope", 0), 1)]).await.unwrap();
    assert_eq!(*deleted[&tp("t", 0)].as_ref().unwrap(), 1);
    for missing in [tp("t", 7), tp("nope", 0)] {
        let e = deleted[&missing].as_ref().unwrap_err();
        assert_eq!(e.error_code(), Some(ErrorCode::UnknownTopicOrPartition), "{e:?}");
        assert!(e.to_string().contains(&format!("partition {missing}")), "{e}");
    }
    assert_eq!(fake.requests(ApiKey::DeleteRecords), 1);
}

/// FindCoordinator answered from `coordinators` (group → broker), in the fields of the
/// request's version: `coordinators` from v4, the top-level fields before. A group named
/// elsewhere than that version's field gets node -1 (no such broker).
fn find_coordinator(version: i16, request: &AnyRequest, coordinators: &BTreeMap<String, i32>) -> Reply {
    let AnyRequest::FindCoordinator(r) = request else { return Reply::Default };
    let node = |key: &str| coordinators.get(key).copied().unwrap_or(-1);
    if version >= 4 {
        Reply::respond(FindCoordinatorResponse {
            coordinators: r
                .coordinator_keys
                .iter()
                .map(|k| Coordinator {
                    key: k.clone(),
                    node_id: node(k),
                    host: format!("broker-{}", node(k)),
                    port: i32::from(FAKE_PORT),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    } else {
        Reply::respond(FindCoordinatorResponse {
            node_id: node(&r.key),
            host: format!("broker-{}", node(&r.key)),
            port: i32::from(FAKE_PORT),
            ..Default::default()
        })
    }
}

/// DescribeGroups and DeleteGroups answered by a broker: NOT_COORDINATOR for groups it does not
/// coordinate.
fn answer_groups(me: i32, request: &AnyRequest, coordinators: &BTreeMap<String, i32>) -> Reply {
    let code = |g: &str| if coordinators.get(g) == Some(&me) { 0 } else { 16 };
    match request {
        AnyRequest::DescribeGroups(r) => Reply::respond(DescribeGroupsResponse {
            groups: r
                .groups
                .iter()
                .map(|g| {
                    if code(g) != 0 {
                        return DescribedGroup { group_id: g.clone(), error_code: code(g), ..Default::default() };
                    }
                    DescribedGroup {
                        group_id: g.clone(),
                        group_state: "Stable".into(),
                        protocol_type: "consumer".into(),
                        protocol_data: "range".into(),
                        members: vec![DescribedGroupMember {
                            member_id: format!("{g}-member-at-{me}"),
                            client_id: "c".into(),
                            client_host: "/10.0.0.1".into(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }
                })
                .collect(),
            ..Default::default()
        }),
        AnyRequest::DeleteGroups(r) => Reply::respond(DeleteGroupsResponse {
            results: r
                .groups_names
                .iter()
                .map(|g| DeletableGroupResult { group_id: g.clone(), error_code: code(g), ..Default::default() })
                .collect(),
            ..Default::default()
        }),
        _ => Reply::Default,
    }
}

fn groups_asked(fake: &FakeCluster, id: i32, api: ApiKey) -> Vec<String> {
    fake.broker(id)
        .received()
        .into_iter()
        .flat_map(|(_, r)| match (api, r) {
            (ApiKey::DescribeGroups, AnyRequest::DescribeGroups(r)) => r.groups.clone(),
            (ApiKey::DeleteGroups, AnyRequest::DeleteGroups(r)) => r.groups_names.clone(),
            _ => Vec::new(),
        })
        .collect()
}

async fn groups_go_to_their_coordinators(find_coordinator_max: Option<i16>) {
    let fake = FakeCluster::new(3);
    if let Some(max) = find_coordinator_max {
        fake.broker(1).set_api_range(ApiKey::FindCoordinator, 0, max);
    }
    let coordinators: BTreeMap<String, i32> = [("g-a".to_string(), 2), ("g-b".to_string(), 3)].into();
    on_brokers(&fake, move |broker, header, request| match request {
        AnyRequest::FindCoordinator(_) => find_coordinator(header.request_api_version, request, &coordinators),
        _ => answer_groups(broker.id(), request, &coordinators),
    });
    let admin = admin(&fake).await;

    let described = admin.describe_groups(&["g-b", "g-a"]).await.unwrap();
    assert_eq!(described.len(), 2);
    for (group, at) in [("g-a", 2), ("g-b", 3)] {
        let d = described[group].as_ref().unwrap();
        assert_eq!(d.group_id, group);
        assert_eq!(d.state, "Stable");
        assert_eq!(d.protocol, "range");
        assert_eq!(d.members.len(), 1);
        assert_eq!(d.members[0].member_id, format!("{group}-member-at-{at}"));
    }
    assert_eq!(groups_asked(&fake, 1, ApiKey::DescribeGroups), Vec::<String>::new());
    assert_eq!(groups_asked(&fake, 2, ApiKey::DescribeGroups), ["g-a"]);
    assert_eq!(groups_asked(&fake, 3, ApiKey::DescribeGroups), ["g-b"]);

    let deleted = admin.delete_groups(&["g-a", "g-b"]).await.unwrap();
    assert!(deleted.values().all(Result::is_ok), "{deleted:?}");
    assert_eq!(groups_asked(&fake, 1, ApiKey::DeleteGroups), Vec::<String>::new());
    assert_eq!(groups_asked(&fake, 2, ApiKey::DeleteGroups), ["g-a"]);
    assert_eq!(groups_asked(&fake, 3, ApiKey::DeleteGroups), ["g-b"]);
    // One FindCoordinator per group and call; none answered NOT_COORDINATOR.
    assert_eq!(fake.requests(ApiKey::FindCoordinator), 4);
    for (header, request) in (1..=3).flat_map(|id| fake.broker(id).received()) {
        let AnyRequest::FindCoordinator(r) = request else { continue };
        let version = header.request_api_version;
        match find_coordinator_max {
            Some(max) => assert_eq!(version, max),
            None => assert!(version >= 4, "v{version}"),
        }
        assert_eq!(r.key_type, 0, "a group's coordinator");
        if version >= 4 {
            assert!(r.key.is_empty() && r.coordinator_keys.len() == 1, "{r:?}");
        } else {
            assert!(r.coordinator_keys.is_empty() && r.key.starts_with("g-"), "{r:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn describe_and_delete_groups_go_to_the_coordinator() {
    groups_go_to_their_coordinators(None).await;
}

#[tokio::test(start_paused = true)]
async fn describe_and_delete_groups_go_to_the_coordinator_found_with_find_coordinator_v3() {
    groups_go_to_their_coordinators(Some(3)).await;
}

fn describe_configs_answer(me: i32, broker: &FakeBroker, request: &AnyRequest) -> Reply {
    let AnyRequest::DescribeConfigs(r) = request else { return Reply::Default };
    let entry = |name: &str, value: String, source| DescribeConfigsResourceResult {
        name: name.into(),
        value: Some(value),
        config_source: source,
        ..Default::default()
    };
    Reply::respond(DescribeConfigsResponse {
        results: r
            .resources
            .iter()
            .map(|res| {
                let base = DescribeConfigsResult {
                    resource_type: res.resource_type,
                    resource_name: res.resource_name.clone(),
                    ..Default::default()
                };
                match res.resource_type {
                    // A topic: any broker knows its configs.
                    2 if broker.state().topics.contains_key(&res.resource_name) => DescribeConfigsResult {
                        configs: vec![
                            entry("retention.ms", "1000".into(), 1),
                            entry("cleanup.policy", "delete".into(), 5),
                        ],
                        ..base
                    },
                    2 => DescribeConfigsResult {
                        error_code: 3,
                        error_message: Some(format!("Topic {} does not exist", res.resource_name)),
                        ..base
                    },
                    // A broker's configs: shown as the answering broker has them.
                    4 => DescribeConfigsResult { configs: vec![entry("broker.id", me.to_string(), 4)], ..base },
                    _ => DescribeConfigsResult { error_code: 42, ..base },
                }
            })
            .collect(),
        ..Default::default()
    })
}

#[tokio::test(start_paused = true)]
async fn describe_configs_of_a_broker_asks_that_broker() {
    let fake = FakeCluster::new(3);
    fake.create_topic("t", 1);
    on_brokers(&fake, |broker, _, request| describe_configs_answer(broker.id(), broker, request));
    let admin = admin(&fake).await;

    let configs = admin.describe_configs(&[ConfigResource::Broker(2)]).await.unwrap();
    let entries = configs[&ConfigResource::Broker(2)].as_ref().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].name, "broker.id");
    assert_eq!(entries[0].value.as_deref(), Some("2"), "answered by broker 2");
    assert_eq!(entries[0].source, ConfigSource::StaticBroker);
    assert_eq!(fake.broker(2).requests(ApiKey::DescribeConfigs), 1);
    assert_eq!(fake.broker(1).requests(ApiKey::DescribeConfigs), 0);
    assert_eq!(fake.broker(3).requests(ApiKey::DescribeConfigs), 0);

    // With a topic alongside, the broker's resource still goes to that broker alone; the
    // topic's entries come sorted by name.
    let configs =
        admin.describe_configs(&[ConfigResource::Topic("t".into()), ConfigResource::Broker(3)]).await.unwrap();
    let names: Vec<&str> =
        configs[&ConfigResource::Topic("t".into())].as_ref().unwrap().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["cleanup.policy", "retention.ms"]);
    assert_eq!(configs[&ConfigResource::Broker(3)].as_ref().unwrap()[0].value.as_deref(), Some("3"));
    for id in 1..=3 {
        for (_, r) in fake.broker(id).received() {
            if let AnyRequest::DescribeConfigs(r) = r {
                for res in &r.resources {
                    if res.resource_type == 4 {
                        assert_eq!(res.resource_name, id.to_string(), "broker {id} asked for another's configs");
                    }
                }
            }
        }
    }
    let broker_asks: usize = (1..=3)
        .flat_map(|id| fake.broker(id).received())
        .filter(|(_, r)| matches!(r, AnyRequest::DescribeConfigs(r) if r.resources.iter().any(|res| res.resource_type == 4)))
        .count();
    assert_eq!(broker_asks, 2, "one request per call for the broker's configs");
}

#[tokio::test(start_paused = true)]
async fn list_groups_asks_every_broker_and_merges_sorted() {
    let fake = FakeCluster::new(3);
    on_brokers(&fake, |broker, header, request| {
        let AnyRequest::ListGroups(_) = request else { return Reply::Default };
        let version = header.request_api_version;
        let groups: &[&str] = match broker.id() {
            1 => &["g-c", "g-a"],
            2 => &["g-b"],
            _ => &[],
        };
        Reply::respond(ListGroupsResponse {
            groups: groups
                .iter()
                .map(|g| ListedGroup {
                    group_id: g.to_string(),
                    protocol_type: "consumer".into(),
                    group_state: if version >= 4 { "Stable".into() } else { String::new() },
                    group_type: if version >= 5 { "classic".into() } else { String::new() },
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    });
    let admin = admin(&fake).await;

    let groups = admin.list_groups().await.unwrap();
    let ids: Vec<&str> = groups.iter().map(|g| g.group_id.as_str()).collect();
    assert_eq!(ids, ["g-a", "g-b", "g-c"]);
    assert!(groups.iter().all(|g| g.protocol_type == "consumer"));
    for id in 1..=3 {
        assert_eq!(fake.broker(id).requests(ApiKey::ListGroups), 1, "broker {id}");
    }
}

fn binding(topic: &str, principal: &str) -> AclBinding {
    AclBinding::allow_topic(topic, principal, AclOperation::Read)
}

#[tokio::test(start_paused = true)]
async fn create_acls_maps_results_in_order_to_the_bindings() {
    let fake = FakeCluster::new(2);
    // Refuses the creations of User:mallory, wherever they are in the request.
    on_brokers(&fake, |_, _, request| {
        let AnyRequest::CreateAcls(r) = request else { return Reply::Default };
        Reply::respond(CreateAclsResponse {
            results: r
                .creations
                .iter()
                .map(|c| {
                    if c.principal == "User:mallory" {
                        AclCreationResult {
                            error_code: 31,
                            error_message: Some("not you".into()),
                            ..Default::default()
                        }
                    } else {
                        AclCreationResult::default()
                    }
                })
                .collect(),
            ..Default::default()
        })
    });
    let admin = admin(&fake).await;

    // Given out of order: whatever order the client sends them in, results follow the request
    // (the refused one is neither first nor in the middle, in given or in sorted order).
    let bindings = [
        binding("m-topic", "User:mallory"),
        binding("z-topic", "User:zed"),
        binding("a-topic", "User:alice"),
        binding("b-topic", "User:bob"),
    ];
    let created = admin.create_acls(&bindings).await.unwrap();
    assert_eq!(created.len(), 4);
    for ok in &bindings[1..] {
        assert!(created[ok].is_ok(), "{ok}: {created:?}");
    }
    let e = created[&bindings[0]].as_ref().unwrap_err();
    assert_eq!(e.error_code(), Some(ErrorCode::ClusterAuthorizationFailed));
    assert!(e.to_string().contains("User:mallory") && e.to_string().contains("not you"), "{e}");
    assert_eq!(fake.requests(ApiKey::CreateAcls), 1);
    let sent: Vec<(i8, i8, i8, i8, String)> = (1..=2)
        .flat_map(|id| fake.broker(id).received())
        .filter_map(|(_, r)| match r {
            AnyRequest::CreateAcls(r) => Some(r.creations.clone()),
            _ => None,
        })
        .flatten()
        .map(|c| (c.resource_type, c.resource_pattern_type, c.operation, c.permission_type, c.host))
        .collect();
    assert_eq!(sent, vec![(2, 3, 3, 3, "*".to_string()); 4], "topic, literal, read, allow, any host");
}

#[tokio::test(start_paused = true)]
async fn delete_acls_maps_results_in_order_to_the_filters() {
    let fake = FakeCluster::new(2);
    // Each filter deletes one binding on its resource, by User:owner; the m-topic filter is
    // refused.
    on_brokers(&fake, |_, _, request| {
        let AnyRequest::DeleteAcls(r) = request else { return Reply::Default };
        Reply::respond(DeleteAclsResponse {
            filter_results: r
                .filters
                .iter()
                .map(|f| {
                    let name = f.resource_name_filter.clone().unwrap_or_default();
                    if name == "m-topic" {
                        return DeleteAclsFilterResult { error_code: 29, ..Default::default() };
                    }
                    DeleteAclsFilterResult {
                        matching_acls: vec![DeleteAclsMatchingAcl {
                            resource_type: 2,
                            resource_name: name,
                            pattern_type: 3,
                            principal: "User:owner".into(),
                            host: "*".into(),
                            operation: 3,
                            permission_type: 3,
                            ..Default::default()
                        }],
                        ..Default::default()
                    }
                })
                .collect(),
            ..Default::default()
        })
    });
    let admin = admin(&fake).await;

    let filters = [
        AclFilter::resource(ResourceType::Topic, "z-topic"),
        AclFilter::resource(ResourceType::Topic, "m-topic"),
        AclFilter::resource(ResourceType::Topic, "a-topic"),
        AclFilter::resource(ResourceType::Topic, "b-topic"),
    ];
    let deleted = admin.delete_acls(&filters).await.unwrap();
    assert_eq!(deleted.len(), 4);
    for (filter, topic) in [(&filters[0], "z-topic"), (&filters[2], "a-topic"), (&filters[3], "b-topic")] {
        let bindings = deleted[filter].as_ref().unwrap();
        assert_eq!(bindings, &[binding(topic, "User:owner")], "{filter}");
        assert_eq!(bindings[0].pattern, PatternType::Literal);
        assert_eq!(bindings[0].permission, AclPermission::Allow);
    }
    let e = deleted[&filters[1]].as_ref().unwrap_err();
    assert_eq!(e.error_code(), Some(ErrorCode::TopicAuthorizationFailed));
    assert!(e.to_string().contains("m-topic"), "{e}");
    assert_eq!(fake.requests(ApiKey::DeleteAcls), 1);
}

#[tokio::test(start_paused = true)]
async fn acl_results_that_do_not_match_the_request_are_malformed() {
    let fake = FakeCluster::new(1);
    // One result too few for creations, one too many for deletions.
    on_brokers(&fake, |_, _, request| match request {
        AnyRequest::CreateAcls(r) => Reply::respond(CreateAclsResponse {
            results: vec![AclCreationResult::default(); r.creations.len() - 1],
            ..Default::default()
        }),
        AnyRequest::DeleteAcls(r) => Reply::respond(DeleteAclsResponse {
            filter_results: vec![DeleteAclsFilterResult::default(); r.filters.len() + 1],
            ..Default::default()
        }),
        _ => Reply::Default,
    });
    let admin = admin(&fake).await;

    let bindings = [binding("a", "User:a"), binding("b", "User:b")];
    let created = admin.create_acls(&bindings).await.unwrap();
    assert_eq!(created.len(), 2);
    for b in &bindings {
        match &created[b] {
            Err(AdminError::Malformed { api: ApiKey::CreateAcls, detail }) => {
                assert!(detail.contains("1 results for 2"), "{detail}")
            }
            other => panic!("expected Malformed for {b}, got {other:?}"),
        }
    }
    let filters = [AclFilter::resource(ResourceType::Topic, "a")];
    let deleted = admin.delete_acls(&filters).await.unwrap();
    assert!(matches!(&deleted[&filters[0]], Err(AdminError::Malformed { api: ApiKey::DeleteAcls, .. })), "{deleted:?}");
    // A malformed answer is not retried.
    assert_eq!(fake.requests(ApiKey::CreateAcls), 1);
    assert_eq!(fake.requests(ApiKey::DeleteAcls), 1);
}

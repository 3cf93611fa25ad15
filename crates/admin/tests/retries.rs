//! What admin calls retry, what they do not, and how they end when time is up: NOT_CONTROLLER,
//! NOT_LEADER_OR_FOLLOWER and NOT_COORDINATOR re-resolve the route and retry what they refused;
//! final per-resource errors are returned once; a silent broker or a retriable error answered
//! forever ends in a timeout naming the API, at the call's deadline. Time is paused: timeouts
//! elapse at once.

use krab_admin::{Admin, AdminConfig, AdminError, ConfigResource, ErrorCode, NewTopic, OffsetSpec, TopicPartition};
use krab_protocol::ApiKey;
use krab_protocol::messages::create_topics::CreatableTopicResult;
use krab_protocol::messages::delete_groups::DeletableGroupResult;
use krab_protocol::messages::delete_records::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use krab_protocol::messages::delete_topics::DeletableTopicResult;
use krab_protocol::messages::describe_configs::DescribeConfigsResult;
use krab_protocol::messages::describe_groups::DescribedGroup;
use krab_protocol::messages::find_coordinator::Coordinator;
use krab_protocol::messages::list_offsets::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use krab_protocol::messages::{
    AnyRequest, CreateTopicsResponse, DeleteGroupsResponse, DeleteRecordsResponse, DeleteTopicsResponse,
    DescribeConfigsResponse, DescribeGroupsResponse, FindCoordinatorResponse, ListGroupsResponse, ListOffsetsResponse,
    RequestHeader,
};
use krab_testkit::{FAKE_PORT, FakeBroker, FakeCluster, Reply};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

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

fn metadata_requests(fake: &FakeCluster) -> u64 {
    fake.requests(ApiKey::Metadata)
}

#[tokio::test(start_paused = true)]
async fn not_controller_refreshes_metadata_and_retries_at_the_new_controller() {
    let fake = FakeCluster::new(3);
    fake.state().controller = 2;
    // Only the controller creates topics; the others answer NOT_CONTROLLER for each topic.
    on_brokers(&fake, |broker, _, request| match request {
        AnyRequest::CreateTopics(r) if broker.state().controller != broker.id() => {
            Reply::respond(CreateTopicsResponse {
                topics: r
                    .topics
                    .iter()
                    .map(|t| CreatableTopicResult { name: t.name.clone(), error_code: 41, ..Default::default() })
                    .collect(),
                ..Default::default()
            })
        }
        _ => Reply::Default,
    });
    let admin = admin(&fake).await;
    // The controller moves after the client learnt it was broker 2.
    fake.state().controller = 3;
    let metadata_before = metadata_requests(&fake);

    let created = admin.create_topics(&[NewTopic::new("a", 1, 1), NewTopic::new("b", 2, 1)]).await.unwrap();
    assert!(created["a"].is_ok() && created["b"].is_ok(), "{created:?}");
    assert_eq!(fake.state().topics["b"].len(), 2);
    assert_eq!(fake.broker(2).requests(ApiKey::CreateTopics), 1, "the old controller, once");
    assert_eq!(fake.broker(3).requests(ApiKey::CreateTopics), 1, "the new controller, once");
    assert_eq!(fake.broker(1).requests(ApiKey::CreateTopics), 0);
    assert!(metadata_requests(&fake) > metadata_before, "the controller was looked up again");
    assert_eq!(admin.cluster().snapshot().controller, Some(3));
}

#[tokio::test(start_paused = true)]
async fn not_controller_for_one_topic_retries_only_that_topic_and_already_exists_is_final() {
    let fake = FakeCluster::new(3);
    fake.create_topic("existing", 1);
    // The first request: NOT_CONTROLLER for "later", the default answer for the others.
    let first = Arc::new(Mutex::new(true));
    let seen = first.clone();
    fake.set_handler(move |_, request| match request {
        AnyRequest::CreateTopics(r) if std::mem::take(&mut *seen.lock().unwrap()) => {
            Reply::respond(CreateTopicsResponse {
                topics: r
                    .topics
                    .iter()
                    .map(|t| {
                        let code = match t.name.as_str() {
                            "later" => 41,
                            "existing" => 36,
                            _ => 0,
                        };
                        CreatableTopicResult { name: t.name.clone(), error_code: code, ..Default::default() }
                    })
                    .collect(),
                ..Default::default()
            })
        }
        _ => Reply::Default,
    });
    let admin = admin(&fake).await;

    let created = admin
        .create_topics(&[NewTopic::new("now", 1, 1), NewTopic::new("later", 1, 1), NewTopic::new("existing", 1, 1)])
        .await
        .unwrap();
    assert!(created["now"].is_ok(), "{created:?}");
    assert!(created["later"].is_ok(), "{created:?}");
    let e = created["existing"].as_ref().unwrap_err();
    assert_eq!(e.error_code(), Some(ErrorCode::TopicAlreadyExists));
    assert!(e.to_string().contains("topic existing"), "{e}");
    // The second request named only the topic refused with NOT_CONTROLLER.
    let asked: Vec<Vec<String>> = fake
        .broker(1)
        .received()
        .into_iter()
        .filter_map(|(_, r)| match r {
            AnyRequest::CreateTopics(r) => Some(r.topics.iter().map(|t| t.name.clone()).collect()),
            _ => None,
        })
        .collect();
    assert_eq!(asked, [vec!["existing", "later", "now"], vec!["later"]]);
}

/// DeleteRecords and ListOffsets as a leader answers them (NOT_LEADER_OR_FOLLOWER for what this
/// broker does not lead), except that the first request broker `from` gets for `moving` moves
/// that partition's leadership to `to` (a new epoch) and is refused for it.
fn leader_handler(
    moving: TopicPartition,
    from: i32,
    to: i32,
) -> impl Fn(&FakeBroker, &RequestHeader, &AnyRequest) -> Reply {
    let moved = Arc::new(Mutex::new(false));
    move |broker, _, request| {
        let me = broker.id();
        let led = |topic: &str, partition: i32| {
            let mut state = broker.state();
            let Some(p) = state.topics.get_mut(topic).and_then(|ps| ps.get_mut(partition as usize)) else {
                return false;
            };
            if me == from && topic == moving.topic && partition == moving.partition {
                let mut moved = moved.lock().unwrap();
                if !*moved {
                    *moved = true;
                    p.leader = to;
                    p.epoch += 1;
                    p.replicas = vec![to];
                }
            }
            p.leader == me
        };
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
                                let led = led(&t.name, p.partition_index);
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
                                let led = led(&t.name, p.partition_index);
                                ListOffsetsPartitionResponse {
                                    partition_index: p.partition_index,
                                    error_code: if led { 0 } else { 6 },
                                    // Which broker answered, in the offset.
                                    offset: if led { 1000 * i64::from(me) + i64::from(p.partition_index) } else { -1 },
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
}

fn asked_partitions(fake: &FakeCluster, id: i32) -> Vec<Vec<TopicPartition>> {
    fake.broker(id)
        .received()
        .into_iter()
        .filter_map(|(_, r)| {
            let parts: Vec<TopicPartition> = match r {
                AnyRequest::DeleteRecords(r) => r
                    .topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| TopicPartition::new(t.name.clone(), p.partition_index)))
                    .collect(),
                AnyRequest::ListOffsets(r) => r
                    .topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| TopicPartition::new(t.name.clone(), p.partition_index)))
                    .collect(),
                _ => return None,
            };
            Some(parts)
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn not_leader_retries_only_that_partition_of_delete_records_at_its_new_leader() {
    let fake = FakeCluster::new(3);
    // t-0 at broker 1, t-1 at broker 2; t-1 moves to broker 3 when broker 2 is first asked.
    fake.create_topic("t", 2);
    let p0 = TopicPartition::new("t", 0);
    let p1 = TopicPartition::new("t", 1);
    on_brokers(&fake, leader_handler(p1.clone(), 2, 3));
    let admin = admin(&fake).await;

    let deleted = admin.delete_records(&[(p0.clone(), 7), (p1.clone(), 9)]).await.unwrap();
    assert_eq!(*deleted[&p0].as_ref().unwrap(), 7);
    assert_eq!(*deleted[&p1].as_ref().unwrap(), 9);
    assert_eq!(fake.partition("t", 1).leader, 3);
    // t-0 was final after the first round: its leader was asked once.
    assert_eq!(asked_partitions(&fake, 1), [vec![p0.clone()]]);
    assert_eq!(asked_partitions(&fake, 2), [vec![p1.clone()]]);
    assert_eq!(asked_partitions(&fake, 3), [vec![p1.clone()]]);
    assert_eq!(fake.requests(ApiKey::DeleteRecords), 3);
}

#[tokio::test(start_paused = true)]
async fn not_leader_retries_only_that_partition_of_list_offsets_at_its_new_leader() {
    let fake = FakeCluster::new(3);
    fake.create_topic("t", 2);
    let p0 = TopicPartition::new("t", 0);
    let p1 = TopicPartition::new("t", 1);
    on_brokers(&fake, leader_handler(p0.clone(), 1, 2));
    let admin = admin(&fake).await;
    let metadata_before = metadata_requests(&fake);

    let listed =
        admin.list_offsets(&[(p0.clone(), OffsetSpec::Latest), (p1.clone(), OffsetSpec::Latest)]).await.unwrap();
    assert_eq!(listed[&p0].as_ref().unwrap().offset, 2000, "t-0 answered by its new leader, broker 2");
    assert_eq!(listed[&p1].as_ref().unwrap().offset, 2001, "t-1 answered by broker 2");
    assert_eq!(asked_partitions(&fake, 1), [vec![p0.clone()]]);
    // Broker 2: both in the first round, then t-0 alone once it leads it.
    assert_eq!(asked_partitions(&fake, 2), [vec![p1.clone()], vec![p0.clone()]]);
    assert_eq!(asked_partitions(&fake, 3), Vec::<Vec<TopicPartition>>::new());
    assert!(metadata_requests(&fake) >= metadata_before + 2, "metadata was read for each round");
}

#[tokio::test(start_paused = true)]
async fn a_partition_that_is_never_led_again_times_out_with_not_leader_as_its_last_failure() {
    let fake = FakeCluster::new(2);
    fake.create_topic("t", 2);
    let p0 = TopicPartition::new("t", 0);
    let p1 = TopicPartition::new("t", 1);
    // Broker 2 keeps refusing t-1, which the metadata keeps saying it leads.
    let leaders = leader_handler(TopicPartition::new("none", 0), 0, 0);
    on_brokers(&fake, move |broker, header, request| match request {
        AnyRequest::DeleteRecords(r) if broker.id() == 2 => Reply::respond(DeleteRecordsResponse {
            topics: r
                .topics
                .iter()
                .map(|t| DeleteRecordsTopicResult {
                    name: t.name.clone(),
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| DeleteRecordsPartitionResult {
                            partition_index: p.partition_index,
                            error_code: 6,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        _ => leaders(broker, header, request),
    });
    let admin = admin(&fake).await.with_timeout(Duration::from_secs(5));

    let start = Instant::now();
    let deleted = admin.delete_records(&[(p0.clone(), 3), (p1.clone(), 3)]).await.unwrap();
    let elapsed = start.elapsed();
    assert_eq!(*deleted[&p0].as_ref().unwrap(), 3);
    match deleted[&p1].as_ref().unwrap_err() {
        e @ AdminError::Timeout { api: ApiKey::DeleteRecords, after, last: Some(last) } => {
            assert_eq!(*after, Duration::from_secs(5));
            assert_eq!(e.error_code(), Some(ErrorCode::NotLeaderOrFollower));
            assert!(last.to_string().contains("partition t-1"), "{last}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(elapsed <= Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(asked_partitions(&fake, 1), [vec![p0]]);
    assert!(fake.broker(2).requests(ApiKey::DeleteRecords) > 2, "t-1 was retried");
}

/// FindCoordinator answered with `coordinator()` (node, error code) for every key, in the fields
/// of the request's version.
fn find_coordinator_reply(version: i16, request: &AnyRequest, (node, code): (i32, i16)) -> Reply {
    let AnyRequest::FindCoordinator(r) = request else { return Reply::Default };
    let host = format!("broker-{node}");
    let port = i32::from(FAKE_PORT);
    if version >= 4 {
        Reply::respond(FindCoordinatorResponse {
            coordinators: r
                .coordinator_keys
                .iter()
                .map(|k| Coordinator {
                    key: k.clone(),
                    node_id: node,
                    host: host.clone(),
                    port,
                    error_code: code,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    } else {
        Reply::respond(FindCoordinatorResponse { node_id: node, host, port, error_code: code, ..Default::default() })
    }
}

#[tokio::test(start_paused = true)]
async fn not_coordinator_finds_the_coordinator_again_and_retries() {
    let fake = FakeCluster::new(3);
    // The coordinator starts at broker 2. The first DescribeGroups, and the first DeleteGroups,
    // at the coordinator are refused with NOT_COORDINATOR while it moves to the next broker.
    let coordinator = Arc::new(AtomicI32::new(2));
    let moved: Arc<Mutex<BTreeSet<i16>>> = Arc::default();
    let at = coordinator.clone();
    on_brokers(&fake, move |broker, header, request| {
        let me = broker.id();
        let now = at.load(Ordering::SeqCst);
        let code = |api: ApiKey| {
            if me != now {
                16
            } else if moved.lock().unwrap().insert(api as i16) {
                at.store(me % 3 + 1, Ordering::SeqCst);
                16
            } else {
                0
            }
        };
        match request {
            AnyRequest::FindCoordinator(_) => find_coordinator_reply(header.request_api_version, request, (now, 0)),
            AnyRequest::DescribeGroups(r) => {
                let error_code = code(ApiKey::DescribeGroups);
                Reply::respond(DescribeGroupsResponse {
                    groups: r
                        .groups
                        .iter()
                        .map(|g| DescribedGroup {
                            group_id: g.clone(),
                            error_code,
                            group_state: if error_code == 0 { format!("Stable at {me}") } else { String::new() },
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
            }
            AnyRequest::DeleteGroups(r) => {
                let error_code = code(ApiKey::DeleteGroups);
                Reply::respond(DeleteGroupsResponse {
                    results: r
                        .groups_names
                        .iter()
                        .map(|g| DeletableGroupResult { group_id: g.clone(), error_code, ..Default::default() })
                        .collect(),
                    ..Default::default()
                })
            }
            _ => Reply::Default,
        }
    });
    let admin = admin(&fake).await;

    let described = admin.describe_groups(&["g"]).await.unwrap();
    assert_eq!(described["g"].as_ref().unwrap().state, "Stable at 3");
    assert_eq!(fake.requests(ApiKey::FindCoordinator), 2);
    assert_eq!(fake.broker(2).requests(ApiKey::DescribeGroups), 1);
    assert_eq!(fake.broker(3).requests(ApiKey::DescribeGroups), 1);
    assert_eq!(fake.broker(1).requests(ApiKey::DescribeGroups), 0);

    // Now at broker 3: refused there, then it moves to broker 1.
    let deleted = admin.delete_groups(&["g"]).await.unwrap();
    assert!(deleted["g"].is_ok(), "{deleted:?}");
    assert_eq!(fake.requests(ApiKey::FindCoordinator), 4);
    assert_eq!(fake.broker(3).requests(ApiKey::DeleteGroups), 1);
    assert_eq!(fake.broker(1).requests(ApiKey::DeleteGroups), 1);
    assert_eq!(fake.broker(2).requests(ApiKey::DeleteGroups), 0);
    assert_eq!(coordinator.load(Ordering::SeqCst), 1);
}

fn assert_near_deadline(elapsed: Duration, timeout: Duration) {
    assert!(elapsed >= timeout, "gave up after {elapsed:?}, before the timeout {timeout:?}");
    assert!(elapsed < timeout + Duration::from_secs(3), "gave up after {elapsed:?}, long past {timeout:?}");
}

#[tokio::test(start_paused = true)]
async fn a_controller_that_never_answers_times_out_each_topic_at_the_deadline() {
    let fake = FakeCluster::new(2);
    let admin = admin(&fake).await.with_timeout(Duration::from_secs(5));
    fake.set_handler(|_, request| match request {
        AnyRequest::CreateTopics(_) => Reply::Never,
        _ => Reply::Default,
    });

    let start = Instant::now();
    let created = admin.create_topics(&[NewTopic::new("a", 1, 1), NewTopic::new("b", 1, 1)]).await.unwrap();
    assert_near_deadline(start.elapsed(), Duration::from_secs(5));
    assert_eq!(created.len(), 2);
    for (name, result) in &created {
        match result {
            Err(e @ AdminError::Timeout { api: ApiKey::CreateTopics, after, .. }) => {
                assert_eq!(*after, Duration::from_secs(5));
                assert!(e.to_string().contains("CreateTopics"), "{e}");
            }
            other => panic!("{name}: expected a timeout, got {other:?}"),
        }
    }
    assert_eq!(fake.requests(ApiKey::CreateTopics), 1);
}

#[tokio::test(start_paused = true)]
async fn a_broker_that_never_answers_times_out_the_call_even_past_request_timeouts() {
    // The default timeout (60 s) is longer than a request's (30 s): the request that timed out
    // is sent again, and the call still ends at its deadline.
    let fake = FakeCluster::new(1);
    let admin = admin(&fake).await;
    assert_eq!(admin.timeout(), Duration::from_secs(60));
    fake.set_handler(|_, request| match request {
        AnyRequest::DescribeAcls(_) => Reply::Never,
        _ => Reply::Default,
    });

    let start = Instant::now();
    let result = admin.describe_acls(&krab_admin::AclFilter::any()).await;
    assert_near_deadline(start.elapsed(), Duration::from_secs(60));
    match result {
        Err(e @ AdminError::Timeout { api: ApiKey::DescribeAcls, .. }) => {
            assert!(e.to_string().contains("DescribeAcls did not complete within 60s"), "{e}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(fake.requests(ApiKey::DescribeAcls) >= 2, "the timed-out request was retried");
}

#[tokio::test(start_paused = true)]
async fn coordinator_load_in_progress_forever_times_out_with_it_as_the_last_failure() {
    let fake = FakeCluster::new(2);
    fake.set_handler(|header, request| find_coordinator_reply(header.request_api_version, &request, (2, 14)));
    let timeout = Duration::from_secs(5);
    let admin = admin(&fake).await.with_timeout(timeout);

    let start = Instant::now();
    let described = admin.describe_groups(&["g"]).await.unwrap();
    let elapsed = start.elapsed();
    let e = described["g"].as_ref().unwrap_err();
    match e {
        AdminError::Timeout { api: ApiKey::DescribeGroups, after, last: Some(last) } => {
            assert_eq!(*after, timeout);
            assert!(
                matches!(**last, AdminError::Broker { code: ErrorCode::CoordinatorLoadInProgress, .. }),
                "{last:?}"
            );
            assert!(last.to_string().contains("group g"), "{last}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(e.error_code(), Some(ErrorCode::CoordinatorLoadInProgress));
    // The client stops when the next backoff (at most retry.backoff.max.ms = 1 s, +20 % jitter)
    // would cross the deadline.
    assert!(elapsed <= timeout && elapsed >= timeout - Duration::from_millis(1200), "{elapsed:?}");
    assert!(fake.requests(ApiKey::FindCoordinator) >= 5, "retried: {}", fake.requests(ApiKey::FindCoordinator));
    assert_eq!(fake.requests(ApiKey::DescribeGroups), 0);
}

#[tokio::test(start_paused = true)]
async fn a_retriable_error_forever_times_out_a_whole_call_with_it_as_the_last_failure() {
    let fake = FakeCluster::new(3);
    // Broker 3 keeps answering ListGroups with COORDINATOR_LOAD_IN_PROGRESS.
    on_brokers(&fake, |broker, _, request| match request {
        AnyRequest::ListGroups(_) => Reply::respond(ListGroupsResponse {
            error_code: if broker.id() == 3 { 14 } else { 0 },
            ..Default::default()
        }),
        _ => Reply::Default,
    });
    let timeout = Duration::from_secs(5);
    let admin = admin(&fake).await.with_timeout(timeout);

    let start = Instant::now();
    let e = admin.list_groups().await.unwrap_err();
    let elapsed = start.elapsed();
    match &e {
        AdminError::Timeout { api: ApiKey::ListGroups, last: Some(last), .. } => {
            assert!(last.to_string().contains("broker 3"), "{last}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(e.error_code(), Some(ErrorCode::CoordinatorLoadInProgress));
    assert!(elapsed <= timeout && elapsed >= timeout - Duration::from_millis(1200), "{elapsed:?}");
    assert!(fake.broker(3).requests(ApiKey::ListGroups) >= 5);
}

#[tokio::test(start_paused = true)]
async fn describe_configs_of_an_unknown_topic_is_not_retried() {
    let fake = FakeCluster::new(3);
    on_brokers(&fake, |_, _, request| match request {
        AnyRequest::DescribeConfigs(r) => Reply::respond(DescribeConfigsResponse {
            results: r
                .resources
                .iter()
                .map(|res| DescribeConfigsResult {
                    error_code: 3,
                    error_message: Some("Topic missing does not exist".into()),
                    resource_type: res.resource_type,
                    resource_name: res.resource_name.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        _ => Reply::Default,
    });
    let admin = admin(&fake).await;

    let start = Instant::now();
    let configs = admin.describe_configs(&[ConfigResource::Topic("missing".into())]).await.unwrap();
    let e = configs[&ConfigResource::Topic("missing".into())].as_ref().unwrap_err();
    assert!(matches!(e, AdminError::Broker { api: ApiKey::DescribeConfigs, .. }), "{e:?}");
    assert_eq!(e.error_code(), Some(ErrorCode::UnknownTopicOrPartition));
    assert!(e.to_string().contains("topic missing"), "{e}");
    assert_eq!(fake.requests(ApiKey::DescribeConfigs), 1);
    assert!(start.elapsed() < Duration::from_millis(50), "no backoff: {:?}", start.elapsed());
}

#[tokio::test(start_paused = true)]
async fn a_non_retriable_error_of_one_topic_is_returned_once() {
    let fake = FakeCluster::new(2);
    fake.create_topic("gone", 1);
    fake.create_topic("secret", 1);
    on_brokers(&fake, |broker, header, request| match request {
        AnyRequest::DeleteTopics(r) => {
            let names: Vec<String> = if header.request_api_version >= 6 {
                r.topics.iter().filter_map(|t| t.name.clone()).collect()
            } else {
                r.topic_names.clone()
            };
            Reply::respond(DeleteTopicsResponse {
                responses: names
                    .into_iter()
                    .map(|name| {
                        let error_code = if name == "secret" {
                            29
                        } else {
                            broker.state().topics.remove(&name);
                            0
                        };
                        DeletableTopicResult { name: Some(name), error_code, ..Default::default() }
                    })
                    .collect(),
                ..Default::default()
            })
        }
        _ => Reply::Default,
    });
    let admin = admin(&fake).await;

    let deleted = admin.delete_topics(&["secret", "gone"]).await.unwrap();
    assert!(deleted["gone"].is_ok(), "{deleted:?}");
    let e = deleted["secret"].as_ref().unwrap_err();
    assert!(matches!(
        e,
        AdminError::Broker { api: ApiKey::DeleteTopics, code: ErrorCode::TopicAuthorizationFailed, .. }
    ));
    assert!(e.to_string().contains("topic secret"), "{e}");
    assert!(!e.is_retriable());
    assert_eq!(fake.requests(ApiKey::DeleteTopics), 1);
    assert!(fake.state().topics.contains_key("secret") && !fake.state().topics.contains_key("gone"));
}

#[tokio::test(start_paused = true)]
async fn a_timeout_names_the_failure_seen_last_not_an_earlier_one() {
    let fake = FakeCluster::new(1);
    // NOT_CONTROLLER for the first CreateTopics; after that, the connection is closed each time.
    let first = Arc::new(Mutex::new(true));
    fake.set_handler(move |_, request| match request {
        AnyRequest::CreateTopics(r) if std::mem::take(&mut *first.lock().unwrap()) => {
            Reply::respond(CreateTopicsResponse {
                topics: r
                    .topics
                    .iter()
                    .map(|t| CreatableTopicResult { name: t.name.clone(), error_code: 41, ..Default::default() })
                    .collect(),
                ..Default::default()
            })
        }
        AnyRequest::CreateTopics(_) => Reply::Close,
        _ => Reply::Default,
    });
    let admin = admin(&fake).await.with_timeout(Duration::from_secs(5));

    let created = admin.create_topics(&[NewTopic::new("t", 1, 1)]).await.unwrap();
    match created["t"].as_ref().unwrap_err() {
        AdminError::Timeout { api: ApiKey::CreateTopics, last: Some(last), .. } => {
            assert!(matches!(**last, AdminError::Cluster(_)), "the lost connection came last, got {last:?}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(fake.requests(ApiKey::CreateTopics) >= 2);
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_never_answers_times_out_only_its_own_partitions() {
    let fake = FakeCluster::new(2);
    fake.create_topic("t", 2);
    let p0 = TopicPartition::new("t", 0);
    let p1 = TopicPartition::new("t", 1);
    // Broker 2 (t-1's leader) never answers; broker 1 answers t-0 at once. The call's timeout is
    // shorter than a request's (30 s), so only the call's deadline ends the wait.
    let leaders = leader_handler(TopicPartition::new("none", 0), 0, 0);
    on_brokers(&fake, move |broker, header, request| match request {
        AnyRequest::DeleteRecords(_) | AnyRequest::ListOffsets(_) if broker.id() == 2 => Reply::Never,
        _ => leaders(broker, header, request),
    });
    let timeout = Duration::from_secs(5);
    let admin = admin(&fake).await.with_timeout(timeout);

    let start = Instant::now();
    let deleted = admin.delete_records(&[(p0.clone(), 4), (p1.clone(), 4)]).await.unwrap();
    assert_near_deadline(start.elapsed(), timeout);
    assert_eq!(*deleted[&p0].as_ref().expect("t-0's leader answered: its records are deleted"), 4);
    assert!(matches!(deleted[&p1], Err(AdminError::Timeout { api: ApiKey::DeleteRecords, .. })), "{deleted:?}");
    assert_eq!(fake.broker(1).requests(ApiKey::DeleteRecords), 1);

    let listed =
        admin.list_offsets(&[(p0.clone(), OffsetSpec::Latest), (p1.clone(), OffsetSpec::Latest)]).await.unwrap();
    assert_eq!(listed[&p0].as_ref().expect("t-0's leader answered").offset, 1000);
    assert!(matches!(listed[&p1], Err(AdminError::Timeout { api: ApiKey::ListOffsets, .. })), "{listed:?}");
}

#[tokio::test(start_paused = true)]
async fn a_coordinator_or_broker_that_never_answers_times_out_only_what_was_asked_of_it() {
    let fake = FakeCluster::new(3);
    fake.create_topic("t", 1);
    // g-ok's coordinator is broker 2, g-hung's broker 3; broker 3 never answers group or config
    // requests.
    on_brokers(&fake, |broker, header, request| {
        let me = broker.id();
        match request {
            AnyRequest::FindCoordinator(r) => {
                let key = if header.request_api_version >= 4 { r.coordinator_keys[0].clone() } else { r.key.clone() };
                let node = if key == "g-ok" { 2 } else { 3 };
                find_coordinator_reply(header.request_api_version, request, (node, 0))
            }
            AnyRequest::DescribeGroups(_) | AnyRequest::DescribeConfigs(_) if me == 3 => Reply::Never,
            AnyRequest::DescribeGroups(r) => Reply::respond(DescribeGroupsResponse {
                groups: r
                    .groups
                    .iter()
                    .map(|g| DescribedGroup { group_id: g.clone(), group_state: "Empty".into(), ..Default::default() })
                    .collect(),
                ..Default::default()
            }),
            AnyRequest::DescribeConfigs(r) => Reply::respond(DescribeConfigsResponse {
                results: r
                    .resources
                    .iter()
                    .map(|res| DescribeConfigsResult {
                        resource_type: res.resource_type,
                        resource_name: res.resource_name.clone(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            _ => Reply::Default,
        }
    });
    let timeout = Duration::from_secs(5);
    let admin = admin(&fake).await.with_timeout(timeout);

    let start = Instant::now();
    let described = admin.describe_groups(&["g-ok", "g-hung"]).await.unwrap();
    assert_near_deadline(start.elapsed(), timeout);
    assert_eq!(described["g-ok"].as_ref().expect("its coordinator answered").state, "Empty");
    assert!(
        matches!(described["g-hung"], Err(AdminError::Timeout { api: ApiKey::DescribeGroups, .. })),
        "{described:?}"
    );

    let start = Instant::now();
    let configs = admin.describe_configs(&[ConfigResource::Broker(3), ConfigResource::Broker(2)]).await.unwrap();
    assert_near_deadline(start.elapsed(), timeout);
    assert!(configs[&ConfigResource::Broker(2)].is_ok(), "{configs:?}");
    assert!(
        matches!(configs[&ConfigResource::Broker(3)], Err(AdminError::Timeout { api: ApiKey::DescribeConfigs, .. })),
        "{configs:?}"
    );
}

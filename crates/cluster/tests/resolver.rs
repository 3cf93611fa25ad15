//! The cluster and its resolver against a cluster of fake brokers: coalescing, single flight,
//! tower layering, dead brokers, leader epochs and custom resolvers.

use krab_cluster::rebalance::is_rebalancing;
use krab_cluster::{
    BoxResolver, Cluster, ClusterConfig, ClusterError, ClusterSnapshot, DisconnectReason, MetadataResolver,
    RequestError, ResolveError, ResolveRequest, ResolverConfig,
};
use krab_protocol::ApiKey;
use krab_protocol::messages::AnyRequest;
use krab_protocol::messages::MetadataResponse;
use krab_protocol::messages::metadata::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};
use krab_testkit::{FakeCluster, Held, Reply};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tower::{Service, ServiceBuilder, ServiceExt};

struct Setup {
    fake: FakeCluster,
    cluster: Cluster,
    resolver: MetadataResolver,
    /// The snapshot after resolving "t" once.
    snapshot: Arc<ClusterSnapshot>,
}

/// `brokers` fake brokers, topic "t" with `partitions` partitions (partition p led by broker
/// p % brokers + 1), a connected cluster, and a resolver that has resolved "t" once.
async fn setup(brokers: i32, partitions: i32, config: impl FnOnce(&mut ClusterConfig)) -> Setup {
    let fake = FakeCluster::new(brokers);
    fake.create_topic("t", partitions);
    let mut cfg = fake.config();
    config(&mut cfg);
    let cluster = fake.connect(cfg).await.expect("cluster connects");
    let resolver = MetadataResolver::new(cluster.clone(), ResolverConfig::default());
    let snapshot = resolver.clone().oneshot(ResolveRequest::topics(["t"])).await.expect("t resolves");
    assert_eq!(snapshot.topic("t").unwrap().partitions.len(), partitions as usize);
    Setup { fake, cluster, resolver, snapshot }
}

fn hold_metadata(fake: &FakeCluster) -> mpsc::UnboundedReceiver<Held> {
    let (tx, rx) = mpsc::unbounded_channel();
    fake.set_handler(move |_, request| match request {
        AnyRequest::Metadata(_) => Reply::Hold(tx.clone()),
        _ => Reply::Default,
    });
    rx
}

/// Many callers failing together on one topic share a single Metadata request.
#[tokio::test(start_paused = true)]
async fn concurrent_refreshes_coalesce_into_one_metadata_request() {
    let Setup { fake, cluster, resolver, snapshot } = setup(3, 12, |_| {}).await;
    let generation = snapshot.generation;
    let moved: Vec<(i32, i32, i32)> = (0..8)
        .map(|p| (p, fake.partition("t", p).leader % 3 + 1))
        .map(|(p, l)| (p, l, fake.move_leader("t", p, l)))
        .collect();
    let metadata_before = fake.requests(ApiKey::Metadata);
    let sent_before = resolver.requests_sent();
    let cluster_before = cluster.metadata_requests();

    let callers: Vec<_> = (0..8)
        .map(|_| {
            let resolver = resolver.clone();
            tokio::spawn(async move { resolver.oneshot(ResolveRequest::refresh(["t"], generation)).await })
        })
        .collect();
    for caller in callers {
        let s = caller.await.unwrap().expect("refresh succeeds");
        assert!(s.generation > generation);
        for &(p, leader, epoch) in &moved {
            let info = s.partition("t", p).unwrap();
            assert_eq!((info.leader, info.leader_epoch), (Some(leader), epoch), "partition {p}");
        }
        for p in 8..12 {
            assert_eq!(s.partition("t", p), snapshot.partition("t", p), "partition {p} did not move");
        }
    }
    assert_eq!(fake.requests(ApiKey::Metadata) - metadata_before, 1, "one Metadata request for the incident");
    assert_eq!(resolver.requests_sent() - sent_before, 1);
    assert_eq!(cluster.metadata_requests() - cluster_before, 1);
}

/// A request the current snapshot satisfies costs no Metadata request.
#[tokio::test]
async fn a_satisfied_request_costs_no_metadata_request() {
    let Setup { fake, cluster, resolver, snapshot } = setup(3, 4, |_| {}).await;
    let metadata_before = fake.requests(ApiKey::Metadata);
    let sent_before = resolver.requests_sent();
    for request in [
        ResolveRequest::topics(["t"]),
        ResolveRequest::topics(Vec::<String>::new()),
        ResolveRequest::refresh(["t"], snapshot.generation - 1),
    ] {
        let s = resolver.clone().oneshot(request.clone()).await.unwrap();
        assert!(Arc::ptr_eq(&s, &cluster.snapshot()), "{request:?} answered from the current snapshot");
    }
    assert_eq!(fake.requests(ApiKey::Metadata), metadata_before);
    assert_eq!(resolver.requests_sent(), sent_before);
}

/// A caller arriving while a request for its topics is in flight shares that request; a caller
/// needing another topic joins the next one.
#[tokio::test(start_paused = true)]
async fn callers_arriving_during_a_request_share_it() {
    let Setup { fake, resolver, snapshot, .. } = setup(3, 4, |_| {}).await;
    fake.create_topic("u", 2);
    let generation = snapshot.generation;
    let mut held = hold_metadata(&fake);
    let metadata_before = fake.requests(ApiKey::Metadata);
    let call = |request: ResolveRequest| {
        let resolver = resolver.clone();
        tokio::spawn(async move {
            let result = resolver.oneshot(request).await;
            (result, tokio::time::Instant::now())
        })
    };

    let first = call(ResolveRequest::refresh(["t"], generation));
    let in_flight = held.recv().await.unwrap();
    assert_eq!(in_flight.metadata_topics(), ["t"]);
    let rider = call(ResolveRequest::refresh(["t"], generation));
    let other_topic = call(ResolveRequest::topics(["u"]));
    // Paused clock: returns once the resolver has seen both callers.
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(fake.requests(ApiKey::Metadata) - metadata_before, 1, "one request at a time");
    in_flight.respond_default();

    let (a, a_at) = first.await.unwrap();
    let (b, b_at) = rider.await.unwrap();
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(Arc::ptr_eq(&a, &b), "the rider got the in-flight request's snapshot");
    assert_eq!(a_at, b_at, "answered together, not after another round");
    assert!(a.generation > generation);

    let next = held.recv().await.unwrap();
    assert_eq!(next.metadata_topics(), ["u"], "the other topic went in the next request");
    next.respond_default();
    let u = other_topic.await.unwrap().0.unwrap();
    assert_eq!(u.topic("u").unwrap().partitions.len(), 2);
    assert_eq!(fake.requests(ApiKey::Metadata) - metadata_before, 2);
}

/// The resolver composes with tower layers, and the errors of a layered resolver map back to a
/// typed `ResolveError` through `From<BoxError>`.
#[tokio::test(start_paused = true)]
async fn the_resolver_works_inside_tower_layers() {
    let Setup { fake, cluster, resolver, .. } = setup(3, 4, |_| {}).await;
    let layered = |resolver: MetadataResolver, timeout: Duration| {
        ServiceBuilder::new().map_err(ResolveError::from).timeout(timeout).service(resolver)
    };
    let mut svc = layered(resolver.clone(), Duration::from_secs(5));
    let s = svc.ready().await.unwrap().call(ResolveRequest::topics(["t"])).await.unwrap();
    assert!(s.topic("t").is_some());
    // Layered, it still boxes into the type-erased resolver.
    let boxed = BoxResolver::new(svc.clone());
    assert!(boxed.oneshot(ResolveRequest::topics(["t"])).await.is_ok());

    let _held = hold_metadata(&fake);
    // The layer's timeout fires first: a Layer error holding tower's Elapsed.
    match layered(resolver.clone(), Duration::from_millis(100)).oneshot(ResolveRequest::topics(["missing"])).await {
        Err(ResolveError::Layer(e)) => assert!(e.is::<tower::timeout::error::Elapsed>(), "{e}"),
        other => panic!("expected a Layer error, got {other:?}"),
    }
    // The resolver's own deadline fires first: the typed error comes back through the box.
    let short = MetadataResolver::new(
        cluster.clone(),
        ResolverConfig { deadline: Duration::from_millis(100), ..ResolverConfig::default() },
    );
    match layered(short, Duration::from_secs(10)).oneshot(ResolveRequest::topics(["missing"])).await {
        Err(ResolveError::DeadlineExceeded(d)) => assert_eq!(d, Duration::from_millis(100)),
        other => panic!("expected DeadlineExceeded, got {other:?}"),
    }
}

/// A failed Metadata request reaches a layered caller as `ResolveError::Cluster`.
#[tokio::test]
async fn a_failed_metadata_request_maps_back_to_a_cluster_error() {
    let Setup { fake, resolver, .. } = setup(1, 1, |_| {}).await;
    fake.set_handler(|_, request| match request {
        AnyRequest::Metadata(_) => Reply::Close,
        _ => Reply::Default,
    });
    let svc = ServiceBuilder::new().map_err(ResolveError::from).timeout(Duration::from_secs(5)).service(resolver);
    match svc.oneshot(ResolveRequest::topics(["missing"])).await {
        Err(ResolveError::Cluster(ClusterError::Request {
            api: ApiKey::Metadata,
            source: RequestError::ConnectionLost { reason: DisconnectReason::Eof, sent: true },
            ..
        })) => {}
        other => panic!("expected a Cluster error, got {other:?}"),
    }
}

/// A leader whose address refuses connections fails fast with a rebalancing error, without
/// holding up partitions led by other brokers; once metadata moves its partitions, they resolve
/// to the new leader.
#[tokio::test]
async fn a_down_broker_fails_its_partitions_fast_and_only_them() {
    let Setup { fake, cluster, resolver, snapshot } = setup(3, 6, |c| {
        c.reconnect_backoff = Duration::from_secs(30);
        c.reconnect_backoff_max = Duration::from_secs(30);
    })
    .await;
    fake.set_down(2, true);
    let started = std::time::Instant::now();
    for round in 0..3 {
        for p in 0..6 {
            let leader = fake.partition("t", p).leader;
            match cluster.leader("t", p).await {
                Ok((broker, epoch)) => {
                    assert_ne!(leader, 2, "partition {p}");
                    assert_eq!((broker.id(), epoch), (Some(leader), 0), "partition {p}");
                }
                Err(e) => {
                    assert_eq!(leader, 2, "partition {p}: {e}");
                    assert!(is_rebalancing(&e), "partition {p}: {e} is a rebalancing error");
                    if round == 0 && p == 1 {
                        assert!(
                            matches!(
                                &e,
                                ClusterError::Connect {
                                    reason: DisconnectReason::Io { kind: std::io::ErrorKind::ConnectionRefused, .. },
                                    ..
                                }
                            ),
                            "{e:?}"
                        );
                    } else {
                        assert!(matches!(e, ClusterError::BrokerUnavailable { broker: 2, .. }), "{e:?}");
                    }
                }
            }
        }
    }
    assert!(started.elapsed() < Duration::from_secs(2), "failed fast: {:?}", started.elapsed());
    assert_eq!(fake.connects(2), 1, "one refused attempt, then reconnect backoff");
    assert_eq!(cluster.connected_brokers(), [1, 3]);

    fake.move_leader("t", 1, 3);
    fake.move_leader("t", 4, 1);
    let s = resolver.oneshot(ResolveRequest::refresh(["t"], snapshot.generation)).await.unwrap();
    assert_eq!(s.partition("t", 1).unwrap().leader, Some(3));
    for (p, new_leader) in [(1, 3), (4, 1)] {
        let (broker, epoch) = cluster.leader("t", p).await.expect("moved partition resolves");
        assert_eq!((broker.id(), epoch), (Some(new_leader), 1), "partition {p}");
    }
}

/// The same over real loopback TCP: a leader whose port refuses connections.
#[tokio::test]
async fn a_refused_tcp_connection_is_a_rebalancing_error() {
    let fake = FakeCluster::new_tcp(3).await;
    fake.create_topic("t", 3);
    fake.stop_listening(2).await;
    let cluster = Cluster::connect(fake.config()).await.expect("bootstrap over TCP");
    cluster.fetch_metadata(Some(&["t".to_string()])).await.unwrap();
    let e = cluster.leader("t", 1).await.expect_err("broker 2 refuses connections");
    assert!(
        matches!(
            &e,
            ClusterError::Connect {
                reason: DisconnectReason::Io { kind: std::io::ErrorKind::ConnectionRefused, .. },
                ..
            }
        ),
        "{e:?}"
    );
    assert!(is_rebalancing(&e));
    for (p, id) in [(0, 1), (2, 3)] {
        assert_eq!(cluster.leader("t", p).await.unwrap().0.id(), Some(id));
    }
}

/// A lagging Metadata response carrying an older leader epoch does not move a leader back.
#[tokio::test]
async fn a_lagging_metadata_response_never_moves_an_epoch_backwards() {
    let fake = FakeCluster::new(3);
    fake.create_topic("t", 2);
    fake.set_partition("t", 0, 1, 5);
    fake.set_partition("t", 1, 2, 5);
    let cluster = fake.connect(fake.config()).await.unwrap();
    let resolver = MetadataResolver::new(cluster.clone(), ResolverConfig::default());
    let s1 = resolver.clone().oneshot(ResolveRequest::topics(["t"])).await.unwrap();
    assert_eq!(s1.partition("t", 0).unwrap().leader_epoch, 5);

    // A broker lagging behind reports partition 0 at an older epoch; partition 1 really moved.
    fake.set_partition("t", 0, 3, 4);
    fake.set_partition("t", 1, 3, 6);
    let s2 = resolver.oneshot(ResolveRequest::refresh(["t"], s1.generation)).await.unwrap();
    assert!(s2.generation > s1.generation);
    let p0 = s2.partition("t", 0).unwrap();
    assert_eq!((p0.leader, p0.leader_epoch), (Some(1), 5), "stale answer ignored");
    let p1 = s2.partition("t", 1).unwrap();
    assert_eq!((p1.leader, p1.leader_epoch), (Some(3), 6), "newer answer applied");
    let (broker, epoch) = cluster.leader("t", 0).await.unwrap();
    assert_eq!((broker.id(), epoch), (Some(1), 5));
}

fn static_snapshot() -> Arc<ClusterSnapshot> {
    let response = MetadataResponse {
        brokers: vec![MetadataResponseBroker { node_id: 7, host: "static-7".into(), port: 9092, ..Default::default() }],
        topics: vec![MetadataResponseTopic {
            name: Some("t".into()),
            partitions: vec![MetadataResponsePartition {
                partition_index: 0,
                leader_id: 7,
                leader_epoch: 3,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    Arc::new(ClusterSnapshot::default().merge(&response, true))
}

/// A user-supplied resolver (a `service_fn` answering a fixed snapshot) boxes into
/// `BoxResolver`, as does the default resolver.
#[tokio::test]
async fn a_custom_static_resolver_boxes_into_box_resolver() {
    let snapshot = static_snapshot();
    let fixed = snapshot.clone();
    let custom = tower::service_fn(move |request: ResolveRequest| {
        let fixed = fixed.clone();
        async move {
            match request.topics.iter().find(|t| fixed.topic(t).is_none()) {
                None => Ok(fixed),
                Some(t) => {
                    Err(ResolveError::Cluster(ClusterError::UnknownPartition { topic: t.clone(), partition: 0 }))
                }
            }
        }
    });
    let mut resolver: BoxResolver = BoxResolver::new(custom);
    let s = resolver.ready().await.unwrap().call(ResolveRequest::refresh(["t"], 0)).await.unwrap();
    assert!(Arc::ptr_eq(&s, &snapshot));
    assert_eq!(s.leader("t", 0).unwrap().addr.host, "static-7");
    assert!(matches!(
        resolver.clone().oneshot(ResolveRequest::topics(["nope"])).await,
        Err(ResolveError::Cluster(ClusterError::UnknownPartition { .. }))
    ));

    let Setup { resolver: default_resolver, .. } = setup(1, 1, |_| {}).await;
    let boxed: BoxResolver = BoxResolver::new(default_resolver);
    assert!(boxed.oneshot(ResolveRequest::topics(["t"])).await.unwrap().topic("t").is_some());
}

/// A call in progress is answered even when the caller's resolver handle (here the last one) is
/// dropped before the answer: tower's `oneshot` drops the service right after `call`.
#[tokio::test]
async fn a_pending_call_outlives_the_last_resolver_handle() {
    let Setup { fake, cluster, resolver, snapshot } = setup(1, 2, |_| {}).await;
    let mut held = hold_metadata(&fake);
    let call = tokio::spawn(resolver.oneshot(ResolveRequest::refresh(["t"], snapshot.generation)));
    let request = held.recv().await.unwrap();
    fake.move_leader("t", 0, 1);
    request.respond_default();
    let s = call.await.unwrap().expect("answered, not Shutdown");
    assert!(s.generation > snapshot.generation);
    assert!(Arc::ptr_eq(&s, &cluster.snapshot()));
}

/// Two Metadata requests from the resolver are at least the minimum interval apart, and the
/// first waits out the pile-on window.
#[tokio::test(start_paused = true)]
async fn metadata_requests_respect_the_pile_on_window_and_minimum_interval() {
    let fake = FakeCluster::new(1);
    fake.create_topic("t", 1);
    let cluster = fake.connect(fake.config()).await.unwrap();
    let config = ResolverConfig {
        pile_on: Duration::from_millis(20),
        min_interval: Duration::from_millis(300),
        deadline: Duration::from_secs(30),
    };
    let resolver = MetadataResolver::new(cluster.clone(), config);
    let arrivals = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = arrivals.clone();
    fake.set_handler(move |_, request| {
        if let AnyRequest::Metadata(_) = request {
            log.lock().unwrap().push(tokio::time::Instant::now());
        }
        Reply::Default
    });
    let started = tokio::time::Instant::now();
    let s1 = resolver.clone().oneshot(ResolveRequest::topics(["t"])).await.unwrap();
    let s2 = resolver.clone().oneshot(ResolveRequest::refresh(["t"], s1.generation)).await.unwrap();
    assert!(s2.generation > s1.generation);
    let arrivals = arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 2);
    assert!(arrivals[0] - started >= Duration::from_millis(20), "pile-on window: {:?}", arrivals[0] - started);
    assert!(arrivals[1] - arrivals[0] >= Duration::from_millis(300), "min interval: {:?}", arrivals[1] - arrivals[0]);
    assert_eq!(resolver.requests_sent(), 2);
}

//! The cluster's lazy connection pool against fake brokers.

use krab_cluster::ClusterError;
use krab_protocol::ApiKey;
use krab_testkit::{FakeCluster, Reply};
use std::time::Duration;

/// A caller that gives up while a broker connection is being made (a timeout around
/// `cluster.leader`) must not leave that broker unusable for everyone after it.
#[tokio::test]
async fn a_cancelled_connect_does_not_poison_the_pool() {
    let fake = FakeCluster::new(2);
    fake.create_topic("t", 2);
    let cluster = fake.connect(fake.config()).await.unwrap();
    cluster.fetch_metadata(Some(&["t".to_string()])).await.unwrap();

    fake.set_hang(2, true);
    let gave_up = tokio::time::timeout(Duration::from_millis(50), cluster.leader("t", 1)).await;
    assert!(gave_up.is_err(), "the connect hangs, the caller gives up");
    fake.set_hang(2, false);

    let (broker, _) = cluster.leader("t", 1).await.expect("broker 2 reachable again");
    assert_eq!(broker.id(), Some(2));
    assert_eq!(fake.connects(2), 2);
    assert_eq!(cluster.connected_brokers(), [2]);
}

/// Connections are made lazily, once per broker, and shared by every caller.
#[tokio::test]
async fn connections_are_lazy_and_shared() {
    let fake = FakeCluster::new(3);
    fake.create_topic("t", 6);
    let cluster = fake.connect(fake.config()).await.unwrap();
    assert_eq!(cluster.connected_brokers(), Vec::<i32>::new(), "only the bootstrap connection so far");
    cluster.fetch_metadata(Some(&["t".to_string()])).await.unwrap();
    let leaders: Vec<_> = (0..6).map(|p| cluster.leader("t", p)).collect();
    let leaders = futures_util::future::join_all(leaders).await;
    for (p, l) in leaders.into_iter().enumerate() {
        assert_eq!(l.unwrap().0.id(), Some(p as i32 % 3 + 1));
    }
    assert_eq!(cluster.connected_brokers(), [1, 2, 3]);
    for id in 1..=3 {
        // Broker 1 was also the bootstrap server: one more connection.
        assert_eq!(fake.connects(id), if id == 1 { 2 } else { 1 }, "broker {id}");
        assert_eq!(fake.broker(id).requests(ApiKey::ApiVersions), fake.connects(id), "one negotiation per connection");
    }
    assert!(matches!(cluster.broker(42).await, Err(ClusterError::UnknownBroker(42))));
}

/// A connection unused for `idle_timeout` is closed in the background, and made again on the
/// next use.
#[tokio::test]
async fn idle_connections_are_closed_and_remade_on_demand() {
    let fake = FakeCluster::new(2);
    fake.create_topic("t", 2);
    let mut config = fake.config();
    config.idle_timeout = Duration::from_millis(200);
    let cluster = fake.connect(config).await.unwrap();
    cluster.fetch_metadata(Some(&["t".to_string()])).await.unwrap();
    cluster.leader("t", 1).await.unwrap();
    assert_eq!(cluster.connected_brokers(), [2]);

    tokio::time::timeout(Duration::from_secs(5), fake.broker(2).wait_disconnects(1))
        .await
        .expect("the idle connection is closed");
    assert_eq!(cluster.connected_brokers(), Vec::<i32>::new());
    let (broker, _) = cluster.leader("t", 1).await.unwrap();
    assert!(broker.is_connected());
    assert_eq!(fake.connects(2), 2);
}

/// Metadata older than `metadata_max_age` is refreshed in the background.
#[tokio::test]
async fn stale_metadata_is_refreshed_in_the_background() {
    let fake = FakeCluster::new(2);
    fake.create_topic("t", 2);
    let mut config = fake.config();
    config.metadata_max_age = Duration::from_millis(200);
    let cluster = fake.connect(config).await.unwrap();
    cluster.fetch_metadata(Some(&["t".to_string()])).await.unwrap();
    let mut changes = cluster.subscribe();
    changes.borrow_and_update();
    let epoch = fake.move_leader("t", 0, 2);
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            changes.changed().await.unwrap();
            if cluster.snapshot().partition("t", 0).unwrap().leader == Some(2) {
                break;
            }
        }
    })
    .await
    .expect("refreshed in the background");
    assert_eq!(cluster.snapshot().partition("t", 0).unwrap().leader_epoch, epoch);
}

/// A refresh sent to a hung broker must not hold up a refresh sent to a healthy one: no lock is
/// held across a Metadata round trip, only the merge is serialised.
#[tokio::test(start_paused = true)]
async fn a_hung_metadata_request_does_not_delay_another_refresh() {
    let fake = FakeCluster::new(2);
    fake.create_topic("t", 2);
    let cluster = fake.connect(fake.config()).await.unwrap();
    let topics = ["t".to_string()];
    cluster.fetch_metadata(Some(&topics)).await.unwrap();
    cluster.leader("t", 0).await.unwrap();
    assert_eq!(cluster.connected_brokers(), [1]);

    // Broker 1 stops answering Metadata; the next refresh goes to it (the only pooled broker).
    fake.broker(1).set_handler(|_, request| match request {
        krab_protocol::messages::AnyRequest::Metadata(_) => Reply::Never,
        _ => Reply::Default,
    });
    let before = fake.broker(1).requests(ApiKey::Metadata);
    let hung = {
        let cluster = cluster.clone();
        let topics = topics.clone();
        tokio::spawn(async move { cluster.fetch_metadata(Some(&topics)).await })
    };
    fake.broker(1).wait_requests(ApiKey::Metadata, before + 1).await;

    // Broker 2 is connected and idle, so the next refresh goes there; it must not wait for the
    // hung one (30 s request timeout).
    cluster.leader("t", 1).await.unwrap();
    let epoch = fake.move_leader("t", 0, 2);
    let fresh = tokio::time::timeout(Duration::from_secs(5), cluster.fetch_metadata(Some(&topics)))
        .await
        .expect("the healthy broker's answer is not held up by the hung one")
        .unwrap();
    assert_eq!(fake.broker(2).requests(ApiKey::Metadata), 1);
    assert_eq!(fresh.partition("t", 0).unwrap().leader, Some(2));
    assert_eq!(cluster.snapshot().partition("t", 0).unwrap().leader_epoch, epoch);
    assert!(!hung.is_finished());

    // The hung request times out on its own; the published snapshot keeps the newer answer.
    let err = hung.await.unwrap().unwrap_err();
    assert!(matches!(err, ClusterError::Request { .. }), "{err}");
    assert_eq!(cluster.snapshot().partition("t", 0).unwrap().leader, Some(2));
}

/// A broker that accepts connections and then drops them is not reconnected on every ask: a
/// connection that died young counts as a failed attempt and the reconnect backoff applies.
#[tokio::test]
async fn a_connection_that_dies_young_does_not_reset_the_backoff() {
    let fake = FakeCluster::new(2);
    fake.create_topic("t", 2);
    let mut config = fake.config();
    // Far longer than this test takes: every connection here dies young.
    config.reconnect_backoff = Duration::from_secs(30);
    config.reconnect_backoff_max = Duration::from_secs(120);
    let cluster = fake.connect(config).await.unwrap();
    cluster.fetch_metadata(Some(&["t".to_string()])).await.unwrap();
    cluster.leader("t", 1).await.unwrap();
    assert_eq!(fake.connects(2), 1);

    fake.broker(2).kill_connections();
    fake.broker(2).wait_disconnects(1).await;
    tokio::time::timeout(Duration::from_secs(5), async {
        while !cluster.connected_brokers().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the client sees the connection die");

    for _ in 0..3 {
        match cluster.leader("t", 1).await {
            Err(ClusterError::BrokerUnavailable { broker: 2, retry_in, .. }) => {
                assert!(retry_in > Duration::from_secs(10), "{retry_in:?}");
            }
            other => panic!("expected BrokerUnavailable, got {other:?}"),
        }
    }
    assert_eq!(fake.connects(2), 1, "no reconnect inside the backoff");
}

/// A connection that lived longer than the largest backoff was healthy: when it dies, the next
/// caller reconnects at once.
#[tokio::test]
async fn a_connection_that_lived_long_reconnects_at_once() {
    let fake = FakeCluster::new(2);
    fake.create_topic("t", 2);
    let mut config = fake.config();
    config.reconnect_backoff = Duration::from_millis(1);
    config.reconnect_backoff_max = Duration::from_millis(2);
    let cluster = fake.connect(config).await.unwrap();
    cluster.fetch_metadata(Some(&["t".to_string()])).await.unwrap();
    cluster.leader("t", 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    fake.broker(2).kill_connections();
    fake.broker(2).wait_disconnects(1).await;
    tokio::time::timeout(Duration::from_secs(5), async {
        while !cluster.connected_brokers().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the client sees the connection die");
    let (broker, _) = cluster.leader("t", 1).await.expect("reconnected at once");
    assert!(broker.is_connected());
    assert_eq!(fake.connects(2), 2);
}

/// The bootstrap connection is closed once idle, like the pool's connections.
#[tokio::test]
async fn the_bootstrap_connection_is_closed_when_idle() {
    let fake = FakeCluster::new(2);
    fake.create_topic("t", 2);
    let mut config = fake.config();
    config.idle_timeout = Duration::from_millis(200);
    let cluster = fake.connect(config).await.unwrap();
    assert_eq!(fake.connects(1), 1, "only the bootstrap connection");
    tokio::time::timeout(Duration::from_secs(5), fake.broker(1).wait_disconnects(1))
        .await
        .expect("the idle bootstrap connection is closed");
    // Metadata still works: a broker connection is made on demand.
    let s = cluster.fetch_metadata(Some(&["t".to_string()])).await.unwrap();
    assert!(s.topic("t").is_some());
}

/// A dedicated connection is the caller's own: outside the pool (a new connection each time,
/// never handed to other callers) and with its own request timeout, longer than the pool's.
#[tokio::test(start_paused = true)]
async fn a_dedicated_connection_is_the_callers_own_with_its_own_request_timeout() {
    let fake = FakeCluster::new(2);
    let mut config = fake.config();
    config.connection.request_timeout = Duration::from_secs(1);
    let cluster = fake.connect(config).await.unwrap();
    cluster.fetch_metadata(Some(&[])).await.unwrap();
    let pooled = cluster.broker(2).await.unwrap();
    let dedicated = cluster.dedicated(2, Duration::from_secs(30)).await.unwrap();
    assert_eq!(dedicated.id(), Some(2));
    assert_eq!(fake.connects(2), 2, "a connection of its own");
    assert_eq!(cluster.connected_brokers(), [2], "the pool keeps only its own");
    // A request answered after 5 s: past the pool's timeout, within the dedicated one's.
    fake.broker(2).set_handler(|header, _| {
        if header.request_api_key == ApiKey::Metadata as i16 {
            Reply::after(Duration::from_secs(5), Reply::Default)
        } else {
            Reply::Default
        }
    });
    let request = krab_protocol::messages::MetadataRequest { topics: Some(Vec::new()), ..Default::default() };
    assert!(dedicated.call(|_| request.clone()).await.is_ok(), "the dedicated connection waits 30 s");
    assert!(pooled.call(|_| request.clone()).await.is_err(), "the pool's times out after 1 s");
    assert!(matches!(cluster.dedicated(42, Duration::from_secs(1)).await, Err(ClusterError::UnknownBroker(42))));
}

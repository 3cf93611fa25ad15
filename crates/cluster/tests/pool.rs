//! The cluster's lazy connection pool against fake brokers.

use krab_cluster::ClusterError;
use krab_protocol::ApiKey;
use krab_testkit::FakeCluster;
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

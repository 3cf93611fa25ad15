//! Cluster-crate scenarios: bootstrap, version negotiation, metadata and admin on tansu and the
//! mock; coalescing of resolves for moved leaders; a down leader failing fast.

use crate::brokers::mock::MockCluster;
use anyhow::{Context, Result, bail, ensure};
use krab_cluster::rebalance::is_rebalancing;
use krab_cluster::{
    Cluster, ClusterConfig, ClusterError, MetadataResolver, NewTopic, ResolveRequest, ResolverConfig,
    transport::parse_bootstrap,
};
use krab_protocol::ApiKey;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tower::{Service, ServiceExt};

const METADATA: i16 = ApiKey::Metadata as i16;

pub(super) fn config(bootstrap: &str) -> Result<ClusterConfig> {
    let mut cfg = ClusterConfig::new(parse_bootstrap(bootstrap)?);
    cfg.connection.client_id = Some("krab-it".into());
    cfg.connection.request_timeout = Duration::from_secs(10);
    Ok(cfg)
}

pub(super) fn print_versions(label: &str, versions: &krab_cluster::ApiVersions) {
    println!("  {label}: ApiVersions exchanged at v{}", versions.negotiated_with);
    let mut line = String::new();
    for (api, chosen) in versions.chosen() {
        let v = match chosen {
            Ok(v) => format!("v{v}"),
            Err(ClusterError::UnsupportedApi { .. }) => "-".into(),
            Err(_) => "none in common".into(),
        };
        line.push_str(&format!("{api}={v} "));
    }
    println!("  chosen versions: {}", line.trim_end());
}

pub(super) async fn tansu_basics(bootstrap: &str) -> Result<()> {
    let cluster = Cluster::connect(config(bootstrap)?).await?;
    let broker = cluster.any_broker().await?;
    print_versions("tansu", broker.versions());
    ensure!(broker.versions().negotiated_with == ApiKey::ApiVersions.versions().max, "tansu speaks ApiVersions v3");
    let snapshot = cluster.snapshot();
    ensure!(snapshot.brokers.contains_key(&111), "tansu's broker 111 in metadata: {:?}", snapshot.brokers);

    let topic = format!("krab-it-{}", std::process::id());
    cluster.create_topics(&[NewTopic::new(&topic, 3)], Duration::from_secs(10)).await?;
    let err = cluster.create_topics(&[NewTopic::new(&topic, 3)], Duration::from_secs(10)).await.unwrap_err();
    println!("  creating it again: {err}");
    ensure!(err.to_string().contains("TOPIC_ALREADY_EXISTS"), "duplicate create is refused by name: {err}");
    let topics = cluster.list_topics().await?;
    ensure!(topics.contains(&topic), "{topic} listed: {topics:?}");
    let snap = cluster.fetch_metadata(Some(std::slice::from_ref(&topic))).await?;
    let info = snap.topic(&topic).context("topic in metadata")?;
    ensure!(info.partitions.len() == 3, "3 partitions: {:?}", info.partitions);
    ensure!(info.partitions.iter().all(|p| p.leader == Some(111)), "all led by 111");
    cluster.delete_topics(std::slice::from_ref(&topic), Duration::from_secs(10)).await?;
    let topics = cluster.list_topics().await?;
    ensure!(!topics.contains(&topic), "{topic} gone after delete: {topics:?}");
    println!("  created, listed, described and deleted {topic}");
    Ok(())
}

pub(super) async fn mock_basics(mock: &MockCluster) -> Result<()> {
    let cluster = Cluster::connect(config(mock.bootstrap())?).await?;
    let broker = cluster.any_broker().await?;
    print_versions("mock", broker.versions());
    ensure!(
        broker.versions().negotiated_with < ApiKey::ApiVersions.versions().max,
        "the mock refuses ApiVersions v3, so negotiation must have fallen back (got v{})",
        broker.versions().negotiated_with
    );
    let snapshot = cluster.snapshot();
    ensure!(snapshot.brokers.len() == 3, "3 brokers: {:?}", snapshot.brokers.keys());

    let topic = "krab-it-basics";
    match cluster.create_topics(&[NewTopic::new(topic, 6).replication_factor(3)], Duration::from_secs(5)).await {
        Ok(()) => println!("  CreateTopics accepted"),
        Err(e @ ClusterError::UnsupportedApi { .. }) => {
            println!("  CreateTopics: {e}; creating through the mock's control channel");
            mock.create_topic(topic, 6, 3)?;
        }
        Err(e) => return Err(e.into()),
    }
    let topics = cluster.list_topics().await?;
    ensure!(topics.iter().any(|t| t == topic), "{topic} listed: {topics:?}");
    let info = cluster.snapshot().topic(topic).cloned().context("topic in snapshot")?;
    ensure!(info.partitions.len() == 6, "6 partitions");
    let leaders: BTreeMap<i32, Option<i32>> = info.partitions.iter().map(|p| (p.partition, p.leader)).collect();
    println!("  {topic} leaders: {leaders:?}");
    match cluster.delete_topics(&[topic.to_string()], Duration::from_secs(5)).await {
        Ok(()) => println!("  DeleteTopics accepted"),
        Err(e @ ClusterError::UnsupportedApi { .. }) => println!("  DeleteTopics: {e} (the mock has no admin APIs)"),
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// Moves the leaders of 8 of 12 partitions, spread over two brokers, then has 8 tasks ask the
/// resolver at once: all must see the new leaders, and exactly one Metadata request may reach
/// the cluster.
pub(super) async fn mock_coalescing(mock: &MockCluster) -> Result<()> {
    let topic = "krab-it-coalesce";
    mock.create_topic(topic, 12, 3)?;
    let cluster = Cluster::connect(config(mock.bootstrap())?).await?;
    let resolver = MetadataResolver::new(cluster.clone(), ResolverConfig::default());
    let snap = resolver.clone().oneshot(ResolveRequest::topics([topic])).await?;
    let before: BTreeMap<i32, i32> = snap
        .topic(topic)
        .context("topic resolved")?
        .partitions
        .iter()
        .map(|p| (p.partition, p.leader.unwrap_or(-1)))
        .collect();
    // Pick 8 partitions led by two distinct brokers, and move each to another broker.
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for (&p, &l) in &before {
        by_leader.entry(l).or_default().push(p);
    }
    let mut moved: BTreeMap<i32, i32> = BTreeMap::new();
    for (&leader, parts) in by_leader.iter().take(2) {
        for &p in parts.iter().take(4) {
            moved.insert(p, leader % 3 + 1);
        }
    }
    if moved.len() < 8 {
        for (&p, &l) in &before {
            if moved.len() < 8 && !moved.contains_key(&p) {
                moved.insert(p, l % 3 + 1);
            }
        }
    }
    ensure!(moved.len() == 8, "8 partitions to move");
    for (&p, &to) in &moved {
        mock.set_leader(topic, p, to)?;
    }
    println!(
        "  moved leaders: {:?}",
        moved.iter().map(|(p, to)| format!("{p}:{}->{to}", before[p])).collect::<Vec<_>>()
    );

    mock.reset_tracking()?;
    let sent_before = resolver.requests_sent();
    let generation = snap.generation;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (&p, &to) in &moved {
        let r = resolver.clone();
        tasks.push(tokio::spawn(async move {
            let snap = r.oneshot(ResolveRequest::refresh([topic], generation)).await?;
            let leader = snap.partition(topic, p).and_then(|x| x.leader);
            anyhow::Ok((p, to, leader))
        }));
    }
    for t in tasks {
        let (p, want, got) = t.await??;
        ensure!(got == Some(want), "partition {p}: expected leader {want}, resolver says {got:?}");
    }
    let elapsed = started.elapsed();
    let at_mock = mock.request_count(METADATA)?;
    let by_resolver = resolver.requests_sent() - sent_before;
    println!(
        "  8 concurrent resolves in {elapsed:?}: Metadata requests at the mock = {at_mock}, sent by the resolver = {by_resolver}"
    );
    ensure!(at_mock == 1, "exactly one Metadata request reached the cluster, saw {at_mock}");
    ensure!(by_resolver == 1, "the resolver sent exactly one request, sent {by_resolver}");
    Ok(())
}

/// Takes a broker down: its partitions fail fast as rebalancing errors while every other
/// partition still resolves to a live connection; once their leaders move, they resolve too.
pub(super) async fn mock_broker_down(mock: &MockCluster) -> Result<()> {
    let topic = "krab-it-down";
    mock.create_topic(topic, 12, 3)?;
    let mut cfg = config(mock.bootstrap())?;
    cfg.reconnect_backoff = Duration::from_millis(200);
    let cluster = Cluster::connect(cfg).await?;
    let mut resolver = MetadataResolver::new(cluster.clone(), ResolverConfig::default());
    let snap = resolver.ready().await?.call(ResolveRequest::topics([topic])).await?;
    let leaders: BTreeMap<i32, i32> =
        snap.topic(topic).context("topic")?.partitions.iter().map(|p| (p.partition, p.leader.unwrap_or(-1))).collect();
    let down = 2;
    mock.broker_down(down)?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (&p, &leader) in &leaders {
        let c = cluster.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = tokio::time::timeout(Duration::from_secs(5), c.leader(topic, p)).await;
            (p, leader, r, t.elapsed())
        }));
    }
    let mut slowest_healthy = Duration::ZERO;
    for t in tasks {
        let (p, leader, r, took) = t.await?;
        let r = r.with_context(|| format!("partition {p} blocked for 5 s"))?;
        if leader == down {
            let e = match r {
                Ok(_) => bail!("partition {p} is led by the down broker but resolved to a connection"),
                Err(e) => e,
            };
            ensure!(is_rebalancing(&e), "partition {p}: {e} is a rebalancing error");
        } else {
            r.with_context(|| format!("partition {p} led by healthy broker {leader}"))?;
            slowest_healthy = slowest_healthy.max(took);
        }
    }
    println!(
        "  broker {down} down: its {} partitions unavailable, the other {} resolved (slowest {slowest_healthy:?}) in {:?}",
        leaders.values().filter(|&&l| l == down).count(),
        leaders.values().filter(|&&l| l != down).count(),
        started.elapsed()
    );
    // Move the down broker's partitions away; after one refresh they resolve.
    for (&p, &leader) in &leaders {
        if leader == down {
            mock.set_leader(topic, p, 1)?;
        }
    }
    let snap = resolver.ready().await?.call(ResolveRequest::refresh([topic], snap.generation)).await?;
    for (&p, &leader) in &leaders {
        if leader == down {
            ensure!(snap.partition(topic, p).and_then(|x| x.leader) == Some(1), "partition {p} moved to 1");
            let (b, _) = cluster.leader(topic, p).await.with_context(|| format!("partition {p} after the move"))?;
            ensure!(b.id() == Some(1), "partition {p} now led by broker 1");
        }
    }
    mock.broker_up(down)?;
    Ok(())
}

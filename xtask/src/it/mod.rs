//! `cargo xtask it`: the integration suite, against real brokers started here — tansu,
//! librdkafka's mock cluster and Apache Kafka (3 KRaft nodes, each behind a fault proxy). Each
//! scenario asserts real behaviour and prints `PASS <name>: <numbers>` or `FAIL <name>: <why>`.
//!
//! One file per scenario; `support.rs` holds what they share, `test_cluster.rs` the small trait
//! over the three brokers (what each can do), `kafka_control.rs` Kafka's control API.

mod admin_support;
mod cli_support;
mod cli_terminal;
mod cluster_basics;
mod consume_support;
mod consumer_interop_codecs;
mod group_classic;
mod group_support;
pub(crate) mod java_client;
mod kafka_acl;
mod kafka_admin;
mod kafka_auto_create;
mod kafka_cli_interop;
mod kafka_cli_roundtrip;
mod kafka_consume_incidents;
mod kafka_control;
mod kafka_faults;
mod kafka_fetch_sessions;
mod kafka_groups;
mod kafka_idempotent_stall;
mod kafka_incidents;
mod kafka_interop_java;
mod kafka_read_committed;
mod kafka_rf1_restart;
mod kafka_sasl;
mod kafka_soak;
mod kafka_support;
mod kafka_tls;
mod mock_consume_incidents;
mod mock_incidents;
mod mock_send_latency;
mod mock_tracing_events;
mod support;
mod tansu_codecs;
mod tansu_key_placement;
mod tansu_sasl;
pub(crate) mod test_cluster;

use crate::brokers::Venv;
use crate::brokers::kafka::{KafkaCluster, KafkaOptions};
use crate::brokers::mock::MockCluster;
use crate::brokers::tansu::{Options, Tansu};
use anyhow::{Context, Result, bail, ensure};
use std::sync::Arc;
use std::time::Instant;

/// The scenarios each broker runs, by their printed names: `--scenario NAME[,NAME...]` starts
/// only the brokers whose scenarios it names, and rejects names not listed here.
const TANSU_SCENARIOS: &[&str] = &[
    "tansu: bootstrap, versions, metadata, admin",
    "producer/tansu: every codec, headers, null keys and values read back identically by confluent-kafka",
    "producer/tansu: keys a..z land on Java's murmur2 partitions (12 and 6 partitions)",
    "tansu/sasl",
    "tansu/group-classic",
];
const MOCK_SCENARIOS: &[&str] = &[
    "mock: bootstrap, KIP-511 fallback, versions, metadata, topics",
    "mock: 8 moved leaders resolve with exactly one Metadata request",
    "mock: a down leader fails fast without blocking other brokers",
    "producer/mock: 200k records through leader moves, a broker down and injected errors",
    "producer/mock: send stays fast while the flush is slow (rtt 500 ms)",
    "mock/consume-incidents",
    "mock/tracing-events",
];
const KAFKA_SCENARIOS: &[&str] = &[
    "kafka/auto-create",
    "kafka/interop-java",
    "kafka/incidents",
    "kafka/rf1-restart",
    "kafka/idempotent-stall",
    "kafka/soak",
    "kafka/consume-incidents",
    "kafka/read-committed",
    "kafka/fetch-sessions",
    "consumer/interop-codecs",
    "kafka/tls",
    "kafka/sasl",
    "kafka/admin",
    "kafka/acl",
    "kafka/group-classic",
    "kafka/group-cooperative",
    "kafka/group-static",
    "kafka/group-coordinator-kill",
    "kafka/group-mixed",
    "kafka/group-kip848",
    "kafka/cli-roundtrip",
    "kafka/cli-interop",
    "cli/terminal",
];

fn known_scenarios() -> String {
    [TANSU_SCENARIOS, MOCK_SCENARIOS, KAFKA_SCENARIOS]
        .concat()
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Which brokers' scenarios to run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Only {
    All,
    Tansu,
    Mock,
    Kafka,
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut only = Only::All;
    let mut soak = kafka_soak::SoakSize::Ci;
    let mut seed = None;
    let mut scenario: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--only" => {
                only = match it.next().context("--only needs tansu, mock or kafka")?.as_str() {
                    "tansu" => Only::Tansu,
                    "mock" => Only::Mock,
                    "kafka" => Only::Kafka,
                    other => bail!("--only {other}: expected tansu, mock or kafka"),
                }
            }
            "--soak" => soak = kafka_soak::SoakSize::Long,
            "--scenario" => scenario = Some(it.next().context("--scenario needs a name")?.clone()),
            "--seed" => seed = Some(it.next().context("--seed needs a number")?.parse().context("--seed")?),
            other => bail!(
                "it: unknown option `{other}` (usage: it [--only tansu|mock|kafka] [--scenario NAME[,NAME...]] [--soak] [--seed N])"
            ),
        }
    }
    if let Some(names) = &scenario {
        for name in names.split(',') {
            let known = [TANSU_SCENARIOS, MOCK_SCENARIOS, KAFKA_SCENARIOS].iter().any(|list| list.contains(&name));
            ensure!(known, "it: no scenario named `{name}` (known: {})", known_scenarios());
        }
    }
    // `--scenario NAME[,NAME...]` runs only the scenarios of those names, and starts only the
    // brokers they need.
    let picked = |name: &str| {
        debug_assert!([TANSU_SCENARIOS, MOCK_SCENARIOS, KAFKA_SCENARIOS].iter().any(|l| l.contains(&name)), "{name}");
        scenario.as_deref().is_none_or(|s| s.split(',').any(|n| n == name))
    };
    let wants = |o: Only, names: &[&str]| (only == Only::All || only == o) && names.iter().any(|n| picked(n));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut failed = Vec::new();
    let mut passed = 0;
    let mut record = |name: &str, started: Instant, r: Result<String>| {
        let took = started.elapsed().as_secs_f64();
        match r {
            Ok(numbers) if numbers.is_empty() => {
                println!("PASS {name} ({took:.1} s)");
                passed += 1;
            }
            Ok(numbers) => {
                println!("PASS {name}: {numbers} ({took:.1} s)");
                passed += 1;
            }
            Err(e) => {
                println!("FAIL {name}: {e:#} ({took:.1} s)");
                failed.push(name.to_string());
            }
        }
    };
    let none = |r: Result<()>| r.map(|()| String::new());
    macro_rules! record_if {
        ($name:expr, $t:expr, $r:expr $(,)?) => {{
            if picked($name) {
                record($name, $t, $r);
            }
        }};
    }

    if wants(Only::Tansu, TANSU_SCENARIOS) {
        let venv = Venv::ensure()?;
        let tansu = Tansu::start(&venv, Options::new(crate::brokers::free_port()?))?;
        let bootstrap = tansu.bootstrap();
        println!("tansu at {bootstrap}");
        let t = Instant::now();
        record_if!(
            "tansu: bootstrap, versions, metadata, admin",
            t,
            none(rt.block_on(cluster_basics::tansu_basics(&bootstrap))),
        );
        let t = Instant::now();
        record_if!(
            "producer/tansu: every codec, headers, null keys and values read back identically by confluent-kafka",
            t,
            none(rt.block_on(tansu_codecs::codecs_interop(&venv, &tansu))),
        );
        let t = Instant::now();
        record_if!(
            "producer/tansu: keys a..z land on Java's murmur2 partitions (12 and 6 partitions)",
            t,
            none(rt.block_on(tansu_key_placement::key_placement(&venv, &tansu))),
        );
        let t = Instant::now();
        record_if!("tansu/sasl", t, rt.block_on(tansu_sasl::run(&bootstrap)));
        let t = Instant::now();
        // tansu expires members on a session timeout of at most 6 s.
        record_if!("tansu/group-classic", t, rt.block_on(group_classic::run(&venv, &bootstrap, 1, 6000, "tansu")));
    }
    if wants(Only::Mock, MOCK_SCENARIOS) {
        let venv = Venv::ensure()?;
        let mock = Arc::new(MockCluster::start(3)?);
        mock.start_tracking()?;
        println!("mock cluster at {}", mock.bootstrap());
        let t = Instant::now();
        record_if!(
            "mock: bootstrap, KIP-511 fallback, versions, metadata, topics",
            t,
            none(rt.block_on(cluster_basics::mock_basics(&mock))),
        );
        let t = Instant::now();
        record_if!(
            "mock: 8 moved leaders resolve with exactly one Metadata request",
            t,
            none(rt.block_on(cluster_basics::mock_coalescing(&mock))),
        );
        let t = Instant::now();
        record_if!(
            "mock: a down leader fails fast without blocking other brokers",
            t,
            none(rt.block_on(cluster_basics::mock_broker_down(&mock))),
        );
        let t = Instant::now();
        record_if!(
            "producer/mock: 200k records through leader moves, a broker down and injected errors",
            t,
            none(rt.block_on(mock_incidents::leader_moves(&venv, &mock))),
        );
        let t = Instant::now();
        record_if!(
            "producer/mock: send stays fast while the flush is slow (rtt 500 ms)",
            t,
            none(rt.block_on(mock_send_latency::send_latency(&mock))),
        );
        let t = Instant::now();
        record_if!("mock/consume-incidents", t, rt.block_on(mock_consume_incidents::run(&mock)));
        let t = Instant::now();
        // On a thread and runtime of its own: its collector and recorder are that thread's.
        record_if!("mock/tracing-events", t, mock_tracing_events::run(&mock));
    }
    if wants(Only::Kafka, KAFKA_SCENARIOS) {
        let venv = Venv::ensure()?;
        let started = Instant::now();
        // The SSL and MTLS listeners only when kafka/tls runs; the other scenarios use the
        // PLAINTEXT listeners behind the proxies either way.
        let mut options = KafkaOptions::new(3);
        options.tls = picked("kafka/tls");
        options.sasl = picked("kafka/sasl") || picked("kafka/acl");
        options.acl = picked("kafka/acl");
        let kafka = Arc::new(start_healthy(&options)?);
        println!(
            "{} at {} (proxies; direct {}), serving after {:.1} s",
            kafka.version(),
            kafka.bootstrap(),
            kafka.direct_bootstrap(),
            started.elapsed().as_secs_f64()
        );
        let java = java_client::JavaClient::ensure(kafka.dist())?;
        let ctx = kafka_support::KafkaCtx { kafka: kafka.clone(), venv: &venv, java: &java, soak, seed };
        macro_rules! kafka_scenario {
            ($name:expr, $scenario:path) => {{
                if picked($name) {
                    let t = Instant::now();
                    let r = rt.block_on($scenario(&ctx));
                    if r.is_err() {
                        let counts: Vec<String> = kafka.proxies().iter().map(|p| format!("{:?}", p.counts())).collect();
                        println!("  requests per API key at the proxies: {}", counts.join(" | "));
                    }
                    record($name, t, r);
                    // Whatever a failed scenario left behind (a frozen or killed node, a proxy
                    // fault), the next one starts on a healthy cluster.
                    if let Err(e) = kafka.heal() {
                        println!("  could not heal the cluster after {}: {e:#}", $name);
                    }
                }
            }};
        }
        kafka_scenario!("kafka/auto-create", kafka_auto_create::run);
        kafka_scenario!("kafka/interop-java", kafka_interop_java::run);
        kafka_scenario!("kafka/incidents", kafka_incidents::run);
        kafka_scenario!("kafka/rf1-restart", kafka_rf1_restart::run);
        kafka_scenario!("kafka/idempotent-stall", kafka_idempotent_stall::run);
        kafka_scenario!("kafka/soak", kafka_soak::run);
        kafka_scenario!("kafka/consume-incidents", kafka_consume_incidents::run);
        kafka_scenario!("kafka/read-committed", kafka_read_committed::run);
        kafka_scenario!("kafka/fetch-sessions", kafka_fetch_sessions::run);
        kafka_scenario!("consumer/interop-codecs", consumer_interop_codecs::run);
        kafka_scenario!("kafka/tls", kafka_tls::run);
        kafka_scenario!("kafka/sasl", kafka_sasl::run);
        kafka_scenario!("kafka/admin", kafka_admin::run);
        kafka_scenario!("kafka/acl", kafka_acl::run);
        kafka_scenario!("kafka/group-classic", group_classic::kafka);
        kafka_scenario!("kafka/group-cooperative", kafka_groups::cooperative);
        kafka_scenario!("kafka/group-static", kafka_groups::static_membership);
        kafka_scenario!("kafka/group-coordinator-kill", kafka_groups::coordinator_kill);
        kafka_scenario!("kafka/group-mixed", kafka_groups::mixed);
        kafka_scenario!("kafka/group-kip848", group_classic::kip848);
        kafka_scenario!("kafka/cli-roundtrip", kafka_cli_roundtrip::run);
        kafka_scenario!("kafka/cli-interop", kafka_cli_interop::run);
        kafka_scenario!("cli/terminal", cli_terminal::run);
    }
    println!("\n{passed} passed, {} failed", failed.len());
    if !failed.is_empty() {
        bail!("integration scenarios failed: {}", failed.join("; "));
    }
    Ok(())
}

/// Starts the Kafka cluster and checks that a new topic's replicas all join its ISR (a node has
/// been seen to start without ever joining the ISR of new topics, failing every scenario that
/// waits for a full ISR); such a cluster is started again, once.
fn start_healthy(options: &KafkaOptions) -> Result<KafkaCluster> {
    let kafka = KafkaCluster::start(options)?;
    match kafka.create_topic("krab-it-health", 6, 3, &[]) {
        Ok(_) => Ok(kafka),
        Err(e) => {
            println!("  the cluster started unhealthy ({e:#}); starting it again");
            drop(kafka);
            let kafka = KafkaCluster::start(options)?;
            kafka
                .create_topic("krab-it-health", 6, 3, &[])
                .context("the Kafka cluster is unhealthy after a restart")?;
            Ok(kafka)
        }
    }
}

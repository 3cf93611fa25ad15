//! `kafka/soak`: seeded random incidents (kill -9 and restart, SIGSTOP/SIGCONT, leader moves,
//! connection cuts, blackholes, delays) while a producer runs; then the log must show lost 0,
//! duplicated 0, reordered 0, and failed deliveries only where the delivery timeout passed
//! (counted). The CI size plays 25 incidents; `cargo xtask it --soak` at least 100 over at least
//! 3 minutes.

use super::kafka_faults::{Incident, play};
use super::kafka_support::{KafkaCtx, Monitor, Producing, check_log, is_timeout_error, kctl, read_back};
use super::support::producer_config;
use super::test_cluster::{Caps, TestCluster, require};
use anyhow::{Context, Result, bail};
use krab_producer::{Compression, Producer};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const TOPIC: &str = "krab-it-kafka-soak";
const PARTITIONS: i32 = 12;
const RATE: u64 = 1_500;

/// How big a soak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SoakSize {
    /// 25 incidents (CI).
    Ci,
    /// At least 100 incidents over at least 3 minutes.
    Long,
}

/// A small seeded generator (xorshift64*), so a soak can be replayed with `--seed`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

fn pick(rng: &mut Rng, leaders: &BTreeMap<i32, i32>) -> Incident {
    let broker = rng.below(3) as i32 + 1;
    match rng.below(100) {
        0..=9 => Incident::Kill(broker, rng.millis(1_000, 5_000)),
        10..=24 => Incident::Freeze(broker, rng.millis(1_000, 7_000)),
        25..=44 => {
            let mut moves = BTreeMap::new();
            for _ in 0..1 + rng.below(3) {
                let p = rng.below(PARTITIONS as u64) as i32;
                let now = leaders.get(&p).copied().unwrap_or(1);
                moves.insert(p, (now + rng.below(2) as i32) % 3 + 1);
            }
            Incident::MoveLeaders(moves)
        }
        45..=64 => Incident::CutAll,
        65..=84 => Incident::Blackhole(broker, rng.millis(500, 6_000)),
        _ => Incident::Delay(broker, rng.millis(50, 800), rng.millis(1_000, 4_000)),
    }
}

pub(super) async fn run(ctx: &KafkaCtx<'_>) -> Result<String> {
    require(&*ctx.kafka, Caps::ALL)?;
    let (incidents, min_time) = match ctx.soak {
        SoakSize::Ci => (25, Duration::ZERO),
        SoakSize::Long => (100, Duration::from_secs(180)),
    };
    let seed = ctx.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1
    });
    println!("  soak seed {seed} (replay with `cargo xtask it --only kafka --seed {seed}`)");
    let mut rng = Rng(seed);
    kctl(&ctx.kafka, |k| k.create_topic(TOPIC, PARTITIONS, 3, &[("min.insync.replicas", "2")])).await?;
    let mut config = producer_config(&TestCluster::bootstrap(&*ctx.kafka))?;
    config.max_in_flight = 5;
    config.compression = Compression::Lz4;
    config.request_timeout = Duration::from_secs(5);
    config.delivery_timeout = Some(Duration::from_secs(60));
    config.enable_idempotence = Some(true);
    let producer = Producer::connect(config).await?;
    let monitor = Monitor::start(&producer, TOPIC);
    let started = Instant::now();
    let run = Producing::start(producer.clone(), TOPIC, u64::MAX, RATE);
    let mut kinds: BTreeMap<&'static str, u32> = BTreeMap::new();
    let outcome = async {
        run.wait_sent(2_000).await?;
        let mut played = 0;
        while played < incidents || started.elapsed() < min_time {
            let leaders = kctl(&ctx.kafka, |k| TestCluster::leaders(k, TOPIC)).await?;
            let incident = pick(&mut rng, &leaders);
            let kind = match incident {
                Incident::MoveLeaders(_) => "moves",
                Incident::Kill(..) => "kills",
                Incident::Freeze(..) => "freezes",
                Incident::Blackhole(..) => "blackholes",
                Incident::Delay(..) => "delays",
                Incident::CutAll => "cuts",
            };
            let m = play(ctx, &producer, TOPIC, incident).await?;
            played += 1;
            *kinds.entry(kind).or_default() += 1;
            println!(
                "  #{played} {}: {} Metadata, recovered {:.0} ms after",
                m.incident.describe(),
                m.metadata,
                (m.recovered - m.fault_ended).as_secs_f64() * 1e3
            );
        }
        anyhow::Ok(played)
    }
    .await;
    let played = run.unless_failed(outcome).with_context(|| format!("soak seed {seed}"))?;
    run.stop();
    let delivered = run.finish().await?;
    producer.flush().await?;
    let took = started.elapsed();
    let _ = monitor.finish().await?;
    producer.close(Duration::from_secs(10)).await?;
    kctl(&ctx.kafka, |k| k.wait_isr_full(TOPIC, Duration::from_secs(60))).await?;
    let (records, extents, how) = read_back(ctx, TOPIC, PARTITIONS).await?;
    let check = check_log(&records, &extents, &delivered, PARTITIONS, is_timeout_error);
    if !check.problems.is_empty() {
        bail!("seed {seed}: {}", check.problems.join("; "));
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    Ok(format!(
        "{played} incidents ({}) in {:.0} s, seed {seed}; {} records sent; {}; {how}",
        kinds.join(", "),
        took.as_secs_f64(),
        delivered.len(),
        check.summary()
    ))
}

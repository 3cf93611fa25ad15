//! `cargo xtask`: krab's developer tasks.

#[cfg(feature = "krab")]
mod bench;
mod binaries;
mod brokers;
mod capture;
mod codegen;
#[cfg(feature = "krab")]
mod demo;
#[cfg(feature = "krab")]
mod it;
mod proxy;

use anyhow::{Result, bail};
use std::path::{Path, PathBuf};

const USAGE: &str = "\
usage: cargo xtask <task> [options]

tasks:
  demo [--seconds N] [--rate R]     krab's main job end to end: produce to the mock cluster (3 brokers) through leader
                                    moves and a broker outage, live per-partition view, then read back: lost/duplicated
  codegen [--check] [--specs DIR]   generate crates/protocol/src/messages from Kafka's JSON specs
  broker tansu [--port N]           start tansu on 127.0.0.1, print `BOOTSTRAP host:port`, run until stdin closes
  broker kafka [--nodes N]          start Apache Kafka (Maven Central jars; N KRaft nodes, default 3), each behind a
                                    fault proxy; print `BOOTSTRAP ...` (the proxies) and the version
  broker mock [--brokers N]         start librdkafka's mock cluster (ids 1..=N, default 3), print `BOOTSTRAP ...`,
                                    forward stdin lines as commands (create/leader/down/up/err/rtt/track/count/quit)
  capture [--out DIR] [--verbose]   capture golden client<->tansu traffic into crates/protocol/tests/fixtures/golden
  it [--only tansu|mock]            the integration suite: starts tansu and the mock cluster, runs every scenario
  bench cluster [--seconds S] [--concurrency C] [--runs N]
                                    Metadata req/s over one connection to tansu, krab vs librdkafka (rdkafka)
  bench produce [--runs N] [--scale F] [--only tansu|mock] [--size B] [--compression C] [--clients a,b]
                                    producer records/s, MB/s, CPU, RSS: krab vs rdkafka (Base/FutureProducer), rskafka
  bench consume [--broker tansu|kafka] [--runs N] [--size 100|1024] [--compression none|lz4]
                                    consumer records/s, MB/s, CPU, RSS: krab (Stream, poll_batch) vs rdkafka, rskafka,
                                    franz-go, Kafka's ConsumerPerformance, reading one pre-filled topic
  bench send-latency [--records N] [--rate R] [--rtt-ms MS]
                                    krab send().await latency percentiles with a 500 ms broker round trip (mock)
";

fn main() -> Result<()> {
    if let Ok(filter) = std::env::var("KRAB_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init();
    }
    let mut args = std::env::args().skip(1);
    let Some(task) = args.next() else {
        eprint!("{USAGE}");
        bail!("no task given");
    };
    let rest: Vec<String> = args.collect();
    match task.as_str() {
        "codegen" => codegen::run(&rest),
        "broker" => brokers::run(&rest),
        "capture" => capture::run(&rest),
        #[cfg(feature = "krab")]
        "demo" => demo::run(&rest),
        #[cfg(feature = "krab")]
        "it" => it::run(&rest),
        #[cfg(feature = "krab")]
        "bench" => bench::run(&rest),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        other => {
            eprint!("{USAGE}");
            bail!("unknown task `{other}`")
        }
    }
}

/// The workspace root (the parent of `xtask/`).
pub(crate) fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

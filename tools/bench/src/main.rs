//! `krab-bench`: one Kafka client per process, driving one workload against a real broker.
//!
//! One client per process so that CPU time and peak memory, read from `/proc/self`, belong to
//! that client alone. After a warm-up that is not counted, the workload runs for a fixed window;
//! then the process prints ONE line of JSON on stdout (the report, see [`report::Report`]) and
//! exits 0, or exits non-zero when the client failed. Human-readable notes go to stderr.
//!
//! `cargo xtask bench` builds this binary, starts the broker and runs every client alternately.
//!
//! ```text
//! krab-bench metadata --client krab|rdkafka --bootstrap ADDR --topic T [--seconds S] [--concurrency C]
//!                     [--warmup S] [--threads N]
//! krab-bench produce --client krab|rdkafka-base|rdkafka-future|rskafka --bootstrap ADDR --topic T
//!                    [--records N] [--size B] [--compression none|lz4] [--partitions P] ...
//! krab-bench consume --client krab-stream|krab-batch|rdkafka-base|rdkafka-stream|rskafka
//!                    --bootstrap ADDR --topic T [--records N] [--partitions P] ...
//! krab-bench payload [--size B] [--records N]
//! krab-bench send-latency --bootstrap ADDR --topic T [--records N] [--rate R] ...
//! ```

mod consume;
mod group;
mod latency;
mod metadata;
mod procfs;
mod produce;
mod report;

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

const USAGE: &str = "\
usage: krab-bench <workload> --client krab|rdkafka --bootstrap HOST:PORT [options]

workloads:
  metadata --topic T     Metadata requests for topic T, back-to-back over one broker connection

  produce --topic T      N records of B bytes, one send per record (rskafka: pre-built batches), then
                         flush; record i to partition i % P; prints records/s, MB/s, CPU, peak RSS
     --client krab|rdkafka-base|rdkafka-future|rskafka
     --records N (1000000) --size B (100) --compression none|lz4 (none) --partitions P (6)
     --linger-ms L (5) --batch-size B (262144) --buffer-memory B (67108864) --warmup-records N (20000)
     --threads N (krab, rskafka: tokio workers, 1 = current-thread; default 1)
     --concurrency C (rskafka: produce calls in flight; default 6) --rskafka-batch N (1000)
     --keep-futures true|false (krab: await every DeliveryFuture after flush; default false)
     --acks 1|all (1: idempotence off; all: each client's default idempotence; default 1)
  consume --topic T      reads N records of a pre-filled topic (partitions 0..P-1) from the beginning;
                         checks offsets per partition; prints records/s, MB/s, CPU, peak RSS
     --client krab-stream|krab-batch|rdkafka-base|rdkafka-stream|rskafka
     --records N (1000000) --partitions P (6) --max-poll N (krab-batch: records per poll_batch; 500)
     --size B (100: the value size the topic holds, for krab's memory bound)
     --threads N (krab, rskafka: tokio workers, 1 = current-thread; default 1) --timeout-s S (300)
  payload                prints --records N (1000) lines of the produce workload's values of --size B
                         (100) bytes, one per line (a payload file for other tools' benchmarks)
  send-latency --topic T krab only: time each send().await at a steady rate
     --records N (50000) --rate R (10000/s) --size B (100) --partitions P (6) --linger-ms L (5)
     --batch-size B (16384) --buffer-memory B (268435456) --threads N (1)

options (metadata):
  --seconds S            measured window (default 5)
  --warmup S             warm-up before the window, not counted (default 1)
  --concurrency C        requests kept in flight: krab tasks / rdkafka caller threads (default 32)
  --threads N            krab only: tokio worker threads; 1 = current-thread runtime (default 1)
";

/// The client under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Client {
    /// krab, this workspace.
    Krab,
    /// librdkafka through the `rdkafka` crate.
    Rdkafka,
}

impl Client {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Client::Krab => "krab",
            Client::Rdkafka => "rdkafka",
        }
    }
}

impl FromStr for Client {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "krab" => Ok(Client::Krab),
            "rdkafka" => Ok(Client::Rdkafka),
            other => bail!("unknown client `{other}` (known: krab, rdkafka)"),
        }
    }
}

/// Options every workload takes.
#[derive(Debug, Clone)]
pub(crate) struct Common {
    pub(crate) client: Client,
    pub(crate) bootstrap: String,
    pub(crate) warmup: Duration,
    pub(crate) seconds: Duration,
    pub(crate) concurrency: usize,
    pub(crate) threads: usize,
}

/// `--key value` options, each given at most once.
struct Options(BTreeMap<String, String>);

impl Options {
    fn parse(args: &[String]) -> Result<Self> {
        let mut map = BTreeMap::new();
        let mut it = args.iter();
        while let Some(key) = it.next() {
            let Some(name) = key.strip_prefix("--") else { bail!("unexpected argument `{key}`") };
            let value = it.next().with_context(|| format!("{key} needs a value"))?;
            if map.insert(name.to_string(), value.clone()).is_some() {
                bail!("{key} given twice");
            }
        }
        Ok(Self(map))
    }

    fn take(&mut self, name: &str) -> Option<String> {
        self.0.remove(name)
    }

    fn required(&mut self, name: &str) -> Result<String> {
        self.take(name).with_context(|| format!("--{name} is required"))
    }

    fn parsed<T: FromStr>(&mut self, name: &str, default: T) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.take(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e| anyhow::anyhow!("--{name} {v}: {e}")),
        }
    }

    fn common(&mut self) -> Result<Common> {
        let seconds: f64 = self.parsed("seconds", 5.0)?;
        let warmup: f64 = self.parsed("warmup", 1.0)?;
        if !(seconds > 0.0 && warmup >= 0.0) {
            bail!("--seconds must be positive and --warmup not negative");
        }
        Ok(Common {
            client: self.required("client")?.parse()?,
            bootstrap: self.required("bootstrap")?,
            warmup: Duration::from_secs_f64(warmup),
            seconds: Duration::from_secs_f64(seconds),
            concurrency: self.parsed("concurrency", 32usize)?.max(1),
            threads: self.parsed("threads", 1usize)?.max(1),
        })
    }

    /// Fails on options no workload consumed.
    fn finish(self) -> Result<()> {
        match self.0.keys().next() {
            Some(k) => bail!("unknown option --{k}"),
            None => Ok(()),
        }
    }
}

/// The tokio runtime a client runs on: current-thread for `threads <= 1`, else multi-thread.
pub(crate) fn runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    Ok(if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?
    })
}

/// [`runtime`]'s kind, for the notes.
pub(crate) fn runtime_name(threads: usize) -> String {
    if threads <= 1 { "current-thread".into() } else { format!("{threads}-worker") }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("krab-bench: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((workload, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        bail!("no workload given");
    };
    let report = match workload.as_str() {
        "metadata" => {
            let mut opts = Options::parse(rest)?;
            let common = opts.common()?;
            let topic = opts.required("topic")?;
            opts.finish()?;
            metadata::run(&common, &topic)?
        }
        "produce" => {
            let mut opts = Options::parse(rest)?;
            let args = produce::ProduceArgs {
                client: produce::ProduceClient::parse(&opts.required("client")?)?,
                bootstrap: opts.required("bootstrap")?,
                topic: opts.required("topic")?,
                records: opts.parsed("records", 1_000_000u64)?,
                size: opts.parsed("size", 100usize)?,
                compression: opts.parsed("compression", "none".to_string())?,
                partitions: opts.parsed("partitions", 6i32)?,
                linger: Duration::from_millis(opts.parsed("linger-ms", 5u64)?),
                batch_size: opts.parsed("batch-size", 256 * 1024usize)?,
                buffer_memory: opts.parsed("buffer-memory", 64 << 20usize)?,
                threads: opts.parsed("threads", 1usize)?,
                warmup_records: opts.parsed("warmup-records", 20_000u64)?,
                rskafka_batch: opts.parsed("rskafka-batch", 1000usize)?,
                concurrency: opts.parsed("concurrency", 6usize)?,
                keep_futures: opts.parsed("keep-futures", false)?,
                acks: opts.parsed("acks", "1".to_string())?,
            };
            opts.finish()?;
            println!("{}", produce::run(&args)?);
            return Ok(());
        }
        "consume" => {
            let mut opts = Options::parse(rest)?;
            let args = consume::ConsumeArgs {
                client: consume::ConsumeClient::parse(&opts.required("client")?)?,
                bootstrap: opts.required("bootstrap")?,
                topic: opts.required("topic")?,
                records: opts.parsed("records", 1_000_000u64)?,
                partitions: opts.parsed("partitions", 6i32)?,
                max_poll: opts.parsed("max-poll", 500usize)?,
                size: opts.parsed("size", 100usize)?,
                threads: opts.parsed("threads", 1usize)?,
                timeout: Duration::from_secs_f64(opts.parsed("timeout-s", 300.0f64)?.max(0.001)),
            };
            opts.finish()?;
            println!("{}", consume::run(&args)?);
            return Ok(());
        }
        "consume-group" => {
            let mut opts = Options::parse(rest)?;
            let args = group::GroupArgs {
                client: opts.required("client")?,
                bootstrap: opts.required("bootstrap")?,
                topic: opts.required("topic")?,
                records: opts.parsed("records", 1_000_000u64)?,
                partitions: opts.parsed("partitions", 6i32)?,
                timeout: Duration::from_secs_f64(opts.parsed("timeout-s", 300.0f64)?.max(0.001)),
            };
            opts.finish()?;
            println!("{}", group::run(&args)?);
            return Ok(());
        }
        "payload" => {
            let mut opts = Options::parse(rest)?;
            let size = opts.parsed("size", 100usize)?;
            let records = opts.parsed("records", 1000u64)?;
            opts.finish()?;
            produce::write_payload(&mut std::io::stdout().lock(), size, records)?;
            return Ok(());
        }
        "send-latency" => {
            let mut opts = Options::parse(rest)?;
            let args = latency::LatencyArgs {
                bootstrap: opts.required("bootstrap")?,
                topic: opts.required("topic")?,
                records: opts.parsed("records", 50_000u64)?,
                size: opts.parsed("size", 100usize)?,
                rate: opts.parsed("rate", 10_000u64)?,
                partitions: opts.parsed("partitions", 6i32)?,
                linger: Duration::from_millis(opts.parsed("linger-ms", 5u64)?),
                batch_size: opts.parsed("batch-size", 16 * 1024usize)?,
                buffer_memory: opts.parsed("buffer-memory", 256 << 20usize)?,
                threads: opts.parsed("threads", 1usize)?,
            };
            opts.finish()?;
            println!("{}", latency::run(&args)?);
            return Ok(());
        }
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            return Ok(());
        }
        other => {
            eprint!("{USAGE}");
            bail!("unknown workload `{other}`")
        }
    };
    println!("{}", report.to_json());
    Ok(())
}

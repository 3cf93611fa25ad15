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
//! ```

mod metadata;
mod procfs;
mod report;

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

const USAGE: &str = "\
usage: krab-bench <workload> --client krab|rdkafka --bootstrap HOST:PORT [options]

workloads:
  metadata --topic T     Metadata requests for topic T, back-to-back over one broker connection

options:
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

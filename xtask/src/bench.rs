//! `cargo xtask bench`: whole clients against a real broker, krab next to librdkafka.
//!
//! Every measurement is one `krab-bench` process (tools/bench) running one client, so CPU time
//! and peak memory are that client's alone; it prints one line of JSON (see tools/bench). This
//! module builds that binary in release, starts the broker, runs each [`Case`] alternately
//! `--runs` times (the order flips every run so that drift, e.g. a busy neighbour, hits both
//! clients alike), and prints the medians and the krab/rdkafka ratios.
//!
//! Adding a bench (e.g. `bench produce`): a function that starts its broker, lists its cases
//! (the `krab-bench` arguments for each client) and calls [`run_cases`] then [`print_table`].

use crate::brokers::tansu::{Options, Tansu};
use crate::brokers::{Venv, free_port};
use anyhow::{Context, Result, bail};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The cargo package (and binary) of the per-client bench process.
const PACKAGE: &str = "krab-bench";
/// The candidate and the reference in ratio rows.
const CANDIDATE: &str = "krab";
const REFERENCE: &str = "rdkafka";

const USAGE: &str = "usage: cargo xtask bench cluster [--seconds S] [--concurrency C] [--runs N]";

/// `cargo xtask bench ...`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let Some((which, rest)) = args.split_first() else { bail!("{USAGE}") };
    match which.as_str() {
        "cluster" => cluster(rest),
        other => bail!("unknown bench `{other}` (known: cluster)\n{USAGE}"),
    }
}

/// Options every bench takes.
#[derive(Debug, Clone)]
struct Settings {
    /// Measured seconds per process (after a 1 s warm-up).
    seconds: f64,
    /// Requests kept in flight by each client.
    concurrency: usize,
    /// Processes per client.
    runs: usize,
}

impl Settings {
    fn parse(args: &[String], defaults: Settings) -> Result<Settings> {
        let mut s = defaults;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--seconds" => s.seconds = value()?.parse().context("--seconds")?,
                "--concurrency" => s.concurrency = value()?.parse().context("--concurrency")?,
                "--runs" => s.runs = value()?.parse().context("--runs")?,
                other => bail!("unknown option `{other}`\n{USAGE}"),
            }
        }
        if s.seconds.is_nan() || s.seconds <= 0.0 || s.concurrency == 0 || s.runs == 0 {
            bail!("--seconds, --concurrency and --runs must be positive");
        }
        Ok(s)
    }

    /// The `krab-bench` options these settings stand for.
    fn args(&self) -> Vec<String> {
        vec!["--seconds".into(), self.seconds.to_string(), "--concurrency".into(), self.concurrency.to_string()]
    }
}

/// `bench cluster`: Metadata requests over one pipelined connection to tansu.
fn cluster(args: &[String]) -> Result<()> {
    let settings = Settings::parse(args, Settings { seconds: 5.0, concurrency: 32, runs: 3 })?;
    let exe = build()?;
    let venv = Venv::ensure()?;
    let tansu = Tansu::start(&venv, Options::new(free_port()?))?;
    let topic = "krab-bench-metadata";
    tansu.create_topic(topic, 3)?;
    let bootstrap = tansu.bootstrap();
    println!(
        "bench cluster: Metadata({topic}) requests, {} in flight over one connection to tansu at {bootstrap}, \
         {} s measured (after 1 s warm-up) x {} runs per client",
        settings.concurrency, settings.seconds, settings.runs
    );
    let cases: Vec<Case> = [CANDIDATE, REFERENCE]
        .into_iter()
        .map(|client| {
            let mut args: Vec<String> = vec!["metadata".into(), "--client".into(), client.into()];
            args.extend(["--bootstrap".into(), bootstrap.clone(), "--topic".into(), topic.into()]);
            args.extend(settings.args());
            Case { label: client.to_string(), args }
        })
        .collect();
    let results = run_cases(&exe, &cases, settings.runs, Duration::from_secs_f64(settings.seconds + 60.0))?;
    drop(tansu);
    print_table(&results);
    Ok(())
}

/// One client configuration: a label and the `krab-bench` arguments that run it.
pub(crate) struct Case {
    pub(crate) label: String,
    pub(crate) args: Vec<String>,
}

/// The report of one `krab-bench` process.
pub(crate) struct Sample {
    json: serde_json::Value,
    /// Share of the whole machine's CPU that was busy while the process ran (all processes).
    host_busy: f64,
}

impl Sample {
    fn num(&self, key: &str) -> f64 {
        self.json[key].as_f64().unwrap_or(f64::NAN)
    }
}

/// Every case's samples, in case order.
pub(crate) struct Results {
    cases: Vec<(String, Vec<Sample>)>,
}

/// Builds `krab-bench` in release and returns the executable.
fn build() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    eprintln!("building {PACKAGE} (release)");
    let out = Command::new(&cargo)
        .args(["build", "--release", "--quiet", "--package", PACKAGE, "--bin", PACKAGE, "--message-format=json"])
        .current_dir(crate::project_root())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {cargo} build --release -p {PACKAGE}"))?;
    if !out.status.success() {
        bail!("cargo build --release -p {PACKAGE} failed: {}", out.status);
    }
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if msg["reason"] != "compiler-artifact" || msg["target"]["name"] != PACKAGE {
            continue;
        }
        if let Some(exe) = msg["executable"].as_str() {
            return Ok(PathBuf::from(exe));
        }
    }
    bail!("cargo build -p {PACKAGE} reported no executable")
}

/// Runs every case `runs` times, alternating between cases and flipping the order every run,
/// and collects each process's JSON line. Fails on the first process that fails.
pub(crate) fn run_cases(exe: &Path, cases: &[Case], runs: usize, timeout: Duration) -> Result<Results> {
    let mut results = Results { cases: cases.iter().map(|c| (c.label.clone(), Vec::new())).collect() };
    for run in 0..runs {
        let mut order: Vec<usize> = (0..cases.len()).collect();
        if run % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let case = &cases[i];
            let sample =
                run_one(exe, &case.args, timeout).with_context(|| format!("{} (run {})", case.label, run + 1))?;
            println!(
                "  run {}/{runs} {:<8} {:>9.0} req/s  {:>6.1} CPU µs/req  {:>6.1} MB peak RSS  ({} conn, host CPU {:.0}% busy)",
                run + 1,
                case.label,
                sample.num("req_per_s"),
                sample.num("cpu_us_per_req"),
                sample.num("peak_rss_mb"),
                sample.json["broker_connections"],
                sample.host_busy * 100.0,
            );
            results.cases[i].1.push(sample);
        }
    }
    for (label, samples) in &results.cases {
        if let Some(note) = samples.first().and_then(|s| s.json["note"].as_str()) {
            println!("  {label}: {note}");
        }
    }
    Ok(results)
}

/// Runs one `krab-bench` process (stderr passes through) and parses the JSON line it prints last.
fn run_one(exe: &Path, args: &[String], timeout: Duration) -> Result<Sample> {
    let busy0 = host_cpu()?;
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("spawning {}", exe.display()))?;
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{PACKAGE} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let busy1 = host_cpu()?;
    let mut stdout = String::new();
    child.stdout.take().context("child stdout")?.read_to_string(&mut stdout)?;
    if !status.success() {
        bail!("{PACKAGE} {} failed ({status}); stdout: {stdout}", args.join(" "));
    }
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).context("no JSON line on stdout")?;
    let json: serde_json::Value = serde_json::from_str(line).with_context(|| format!("parsing `{line}`"))?;
    let (total, idle) = (busy1.0 - busy0.0, busy1.1 - busy0.1);
    let host_busy = if total > 0.0 { 1.0 - idle / total } else { f64::NAN };
    Ok(Sample { json, host_busy })
}

/// (total, idle) jiffies of the whole machine from `/proc/stat`.
fn host_cpu() -> Result<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let v: Vec<f64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal ...
    let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
    Ok((v.iter().take(8).sum(), idle))
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.retain(|x| x.is_finite());
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 { xs[n / 2] } else { (xs[n / 2 - 1] + xs[n / 2]) / 2.0 }
}

/// The medians per case, their spread, and the candidate/reference ratios.
pub(crate) fn print_table(results: &Results) {
    let med = |samples: &[Sample], key: &str| median(samples.iter().map(|s| s.num(key)).collect());
    println!();
    println!(
        "{:<14} {:>12} {:>20} {:>12} {:>13} {:>6} {:>8}",
        "client", "req/s (med)", "req/s (min..max)", "CPU µs/req", "peak RSS MB", "conns", "threads"
    );
    for (label, samples) in &results.cases {
        let rps: Vec<f64> = samples.iter().map(|s| s.num("req_per_s")).collect();
        let lo = rps.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = rps.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        println!(
            "{:<14} {:>12.0} {:>20} {:>12.1} {:>13.1} {:>6} {:>8}",
            label,
            med(samples, "req_per_s"),
            format!("{lo:.0}..{hi:.0}"),
            med(samples, "cpu_us_per_req"),
            med(samples, "peak_rss_mb"),
            med(samples, "broker_connections"),
            med(samples, "threads"),
        );
    }
    let find = |label: &str| results.cases.iter().find(|(l, _)| l == label).map(|(_, s)| s.as_slice());
    if let (Some(c), Some(r)) = (find(CANDIDATE), find(REFERENCE)) {
        let ratio = |key: &str| med(c, key) / med(r, key);
        println!(
            "{:<14} {:>11.2}x {:>20} {:>11.2}x {:>12.2}x",
            format!("{CANDIDATE}/{REFERENCE}"),
            ratio("req_per_s"),
            "",
            ratio("cpu_us_per_req"),
            ratio("peak_rss_mb"),
        );
        println!("(req/s: higher is better; CPU µs/req and RSS: lower is better. CPU is the client process only.)");
    }
}

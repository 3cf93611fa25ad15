//! `cli/terminal`: the `krab` CLI shows a progress bar on a terminal and plain lines in a pipe.
//!
//! `krab bench produce` (40,000 records at 10,000/s, so about 4 s) runs in a tmux pane (a real
//! pseudo-terminal, 200x50): the screen, captured while it runs, shows indicatif's bar with the
//! position out of the total and the rate, and at the end the report. The same command with
//! stdout and stderr piped prints plain progress lines every 2 s and the report, with no ANSI
//! escape and no carriage return anywhere. Runs against the suite's Kafka cluster.

use super::cli_support::Krab;
use super::kafka_support::KafkaCtx;
use anyhow::{Context, Result, bail, ensure};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TOPIC: &str = "cli-terminal";
const RECORDS: u64 = 40_000;
const RATE: u64 = 10_000;

/// A tmux session of this scenario's own, killed when dropped.
struct Session(String);

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["kill-session", "-t", &self.0]).stderr(Stdio::null()).status();
    }
}

fn capture(session: &str) -> Result<String> {
    let out = Command::new("tmux").args(["capture-pane", "-p", "-t", session]).output().context("tmux capture-pane")?;
    ensure!(out.status.success(), "tmux capture-pane: {}", String::from_utf8_lossy(&out.stderr).trim());
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Single quotes for the shell tmux runs the command with.
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

pub(super) async fn run(ctx: &KafkaCtx<'_>) -> Result<String> {
    let bootstrap = ctx.kafka.bootstrap();
    let krab = Krab::build(&bootstrap).await?;
    krab.create_topic(TOPIC, 3, 3, &[]).await?;
    if Command::new("tmux").arg("-V").stdout(Stdio::null()).status().map(|s| !s.success()).unwrap_or(true) {
        bail!("tmux is not installed (apt-get install tmux)");
    }
    let (records, rate) = (RECORDS.to_string(), RATE.to_string());
    let bench = ["bench", "produce", "-t", TOPIC, "--records", &records, "--rate", &rate];

    // On a terminal.
    let session = Session(format!("krab-it-cli-{}", std::process::id()));
    let command = format!(
        "{} -b {} {}; sleep 600",
        quoted(&krab.exe.to_string_lossy()),
        quoted(&bootstrap),
        bench.iter().map(|a| quoted(a)).collect::<Vec<_>>().join(" ")
    );
    let status = Command::new("tmux")
        .args(["new-session", "-d", "-s", &session.0, "-x", "200", "-y", "50", &command])
        .status()
        .context("tmux new-session")?;
    ensure!(status.success(), "tmux new-session failed: {status}");
    let started = Instant::now();
    let bar_prefix = format!("krab bench produce {TOPIC} [");
    let total = format!("/{RECORDS} ");
    let report = format!("krab bench produce: {RECORDS} records");
    let mut bar_seen: Option<(String, Duration)> = None;
    let screen = loop {
        let screen = tokio::task::block_in_place(|| capture(&session.0))?;
        // A bar mid-run: its position below the total.
        let bar = screen.lines().find(|l| l.contains(&bar_prefix) && l.contains(&total) && l.contains("[="));
        let position = |line: &str| line.split(&total).next().and_then(|s| s.rsplit(' ').next())?.parse::<u64>().ok();
        match bar {
            Some(line) if bar_seen.is_none() && position(line).is_some_and(|p| p < RECORDS) => {
                bar_seen = Some((line.trim().to_string(), started.elapsed()));
            }
            _ => {}
        }
        if screen.contains(&report) {
            break screen;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(90),
            "no report on the terminal after 90 s; the screen:\n{screen}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    drop(session);
    let Some((bar, at)) = bar_seen else { bail!("no progress bar seen mid-run; the final screen:\n{screen}") };
    ensure!(bar.contains("records/s") && bar.contains("MB/s"), "the bar shows no rate: {bar:?}");
    let final_bar = screen.lines().find(|l| l.contains(&bar_prefix)).unwrap_or_default();
    ensure!(final_bar.contains(&format!("{RECORDS}/{RECORDS}")), "the bar does not end full: {final_bar:?}");

    // In a pipe.
    let out = krab.output(&bench, None, Duration::from_secs(120)).await?;
    let (stdout, stderr) = (String::from_utf8(out.stdout)?, String::from_utf8(out.stderr)?);
    ensure!(out.status.success(), "piped bench failed ({}): {}", out.status, stderr.trim());
    for (name, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        ensure!(!text.contains('\x1b'), "an ANSI escape on {name}: {text:?}");
        ensure!(!text.contains('\r'), "a carriage return on {name}: {text:?}");
    }
    let plain: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&format!("krab bench produce {TOPIC}: "))).collect();
    ensure!(!plain.is_empty(), "no plain progress lines on stderr: {stderr:?}");
    ensure!(plain.iter().all(|l| l.contains("records/s")), "plain lines without rates: {plain:?}");
    ensure!(stdout.contains(&report), "no report on stdout: {stdout:?}");
    Ok(format!(
        "terminal: bar `{bar}` after {:.1} s, ends {RECORDS}/{RECORDS}; piped: {} plain lines (`{}`), no escapes or carriage returns",
        at.as_secs_f64(),
        plain.len(),
        plain[0]
    ))
}

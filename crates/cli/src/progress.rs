//! Progress of long runs on stderr: an indicatif bar with rate and ETA when stderr is a
//! terminal, plain lines every 2 s otherwise (no escapes, no carriage returns), or nothing.
//! The bar appears only once a run has lasted a second, so quick commands stay quiet.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Options for what krab shows while it works.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Display")]
pub(crate) struct DisplayArgs {
    /// Progress on stderr: a bar on a terminal, plain lines every 2 s otherwise (auto), always
    /// plain lines, or none.
    #[arg(long, value_enum, default_value_t = ProgressChoice::Auto, global = true)]
    pub(crate) progress: ProgressChoice,
    /// No progress and no summary lines (errors are still printed).
    #[arg(short = 'q', long, global = true)]
    pub(crate) quiet: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ProgressChoice {
    #[default]
    Auto,
    Plain,
    None,
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Bar,
    Plain,
    Hidden,
}

impl DisplayArgs {
    /// The mode for a command; `stdout_carries_records`: the command prints records to stdout
    /// (consume), which on a terminal are progress enough.
    pub(crate) fn mode(&self, stdout_carries_records: bool) -> Mode {
        let stderr_tty = std::io::stderr().is_terminal();
        let stdout_tty = std::io::stdout().is_terminal();
        resolve(self.quiet, self.progress, stderr_tty, stdout_tty && stdout_carries_records)
    }

    /// Whether summary lines are printed.
    pub(crate) fn summaries(&self) -> bool {
        !self.quiet
    }
}

fn resolve(quiet: bool, choice: ProgressChoice, stderr_tty: bool, records_on_terminal: bool) -> Mode {
    match (quiet, choice) {
        (true, _) | (_, ProgressChoice::None) => Mode::Hidden,
        (_, ProgressChoice::Plain) => Mode::Plain,
        (_, ProgressChoice::Auto) if records_on_terminal => Mode::Hidden,
        (_, ProgressChoice::Auto) if stderr_tty => Mode::Bar,
        (_, ProgressChoice::Auto) => Mode::Plain,
    }
}

/// What the run will reach, for the ETA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Total {
    /// This many records.
    Records(u64),
    /// This many input bytes (a file being produced).
    Bytes(u64),
    /// Not known (stdin, an open-ended consume).
    Unknown,
}

/// Counters the run updates and the display reads.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Records done.
    pub(crate) records: AtomicU64,
    /// Payload bytes done (key + value).
    pub(crate) bytes: AtomicU64,
    /// Input bytes read (for [`Total::Bytes`]).
    pub(crate) input: AtomicU64,
}

impl Counters {
    pub(crate) fn add(&self, records: u64, bytes: u64) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// A running progress display; [`Progress::finish`] ends it.
pub(crate) struct Progress {
    counters: Arc<Counters>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts showing the progress of `what` (e.g. `produce orders`).
    pub(crate) fn start(what: String, mode: Mode, total: Total) -> Progress {
        let counters = Arc::new(Counters::default());
        let (stop, stopped) = watch::channel(false);
        let task = match mode {
            Mode::Hidden => None,
            Mode::Bar => Some(tokio::spawn(bar(what, total, counters.clone(), stopped))),
            Mode::Plain => Some(tokio::spawn(plain(what, total, counters.clone(), stopped))),
        };
        Progress { counters, stop, task }
    }

    pub(crate) fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Ends the display (a bar stays on screen at its final state).
    pub(crate) async fn finish(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// `12.3k` style counts.
pub(crate) fn si(n: f64) -> String {
    match n {
        n if n >= 1e9 => format!("{:.2}G", n / 1e9),
        n if n >= 1e6 => format!("{:.2}M", n / 1e6),
        n if n >= 1e4 => format!("{:.1}k", n / 1e3),
        n => format!("{n:.0}"),
    }
}

/// Bytes as MB (10^6), as throughput is usually quoted.
pub(crate) fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn rates(counters: &Counters, elapsed: Duration) -> (u64, u64, f64, f64) {
    let records = counters.records.load(Ordering::Relaxed);
    let bytes = counters.bytes.load(Ordering::Relaxed);
    let secs = elapsed.as_secs_f64().max(1e-3);
    (records, bytes, records as f64 / secs, mb(bytes) / secs)
}

/// The fraction done and the position for the total.
fn done(total: Total, counters: &Counters) -> Option<(u64, u64)> {
    match total {
        Total::Records(n) => Some((counters.records.load(Ordering::Relaxed).min(n), n)),
        Total::Bytes(n) => Some((counters.input.load(Ordering::Relaxed).min(n), n)),
        Total::Unknown => None,
    }
}

/// One plain progress line (no escapes, no carriage return).
pub(crate) fn plain_line(what: &str, total: Total, counters: &Counters, elapsed: Duration) -> String {
    let (records, bytes, rps, mbps) = rates(counters, elapsed);
    let mut line = format!(
        "krab {what}: {records} records, {:.1} MB in {:.1} s ({} records/s, {mbps:.2} MB/s)",
        mb(bytes),
        elapsed.as_secs_f64(),
        si(rps)
    );
    if let Some((pos, len)) = done(total, counters).filter(|(_, len)| *len > 0) {
        line.push_str(&format!(", {:.0}%", pos as f64 * 100.0 / len as f64));
        if let Some(eta) = eta(pos, len, elapsed) {
            line.push_str(&format!(", eta {eta:.0} s"));
        }
    }
    line
}

/// Seconds left at the average pace so far, while there is something left.
fn eta(pos: u64, len: u64, elapsed: Duration) -> Option<f64> {
    (pos > 0 && pos < len).then(|| elapsed.as_secs_f64() * (len - pos) as f64 / pos as f64)
}

async fn plain(what: String, total: Total, counters: Arc<Counters>, mut stopped: watch::Receiver<bool>) {
    let started = Instant::now();
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(2), Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = tick.tick() => eprintln!("{}", plain_line(&what, total, &counters, started.elapsed())),
            _ = stopped.changed() => return,
        }
    }
}

async fn bar(what: String, total: Total, counters: Arc<Counters>, mut stopped: watch::Receiver<bool>) {
    let started = Instant::now();
    // Quick runs show nothing.
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        _ = stopped.changed() => return,
    }
    let (template, len) = match total {
        Total::Records(n) => ("{prefix} [{elapsed_precise}] [{bar:30.cyan/blue}] {pos}/{len} {msg}", Some(n)),
        Total::Bytes(n) => ("{prefix} [{elapsed_precise}] [{bar:30.cyan/blue}] {bytes}/{total_bytes} {msg}", Some(n)),
        Total::Unknown => ("{prefix} {spinner} [{elapsed_precise}] {pos} records {msg}", None),
    };
    let style =
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> ");
    let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr()).with_elapsed(started.elapsed());
    bar.set_style(style);
    bar.set_prefix(format!("krab {what}"));
    let update = |bar: &ProgressBar| {
        let elapsed = started.elapsed();
        let (records, _, rps, mbps) = rates(&counters, elapsed);
        let mut message = format!("{} records/s {mbps:.2} MB/s", si(rps));
        match done(total, &counters) {
            Some((pos, len)) => {
                bar.set_position(pos);
                if let Some(eta) = eta(pos, len, elapsed) {
                    message.push_str(&format!(" eta {eta:.0} s"));
                }
            }
            None => bar.set_position(records),
        }
        bar.set_message(message);
    };
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick() => update(&bar),
            _ = stopped.changed() => {
                update(&bar);
                bar.abandon();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mode_follows_the_terminals() {
        use ProgressChoice::*;
        assert_eq!(resolve(false, Auto, true, false), Mode::Bar);
        assert_eq!(resolve(false, Auto, false, false), Mode::Plain);
        assert_eq!(resolve(false, Auto, true, true), Mode::Hidden, "records on the terminal are the progress");
        assert_eq!(resolve(false, Plain, true, true), Mode::Plain);
        assert_eq!(resolve(false, None, true, false), Mode::Hidden);
        assert_eq!(resolve(true, Plain, true, false), Mode::Hidden);
    }

    #[test]
    fn plain_lines_have_no_escapes() {
        let c = Counters::default();
        c.add(5000, 2_500_000);
        let line = plain_line("bench produce t", Total::Records(10_000), &c, Duration::from_secs(2));
        assert_eq!(
            line,
            "krab bench produce t: 5000 records, 2.5 MB in 2.0 s (2500 records/s, 1.25 MB/s), 50%, eta 2 s"
        );
        assert!(!line.contains('\r') && !line.contains('\x1b'));
        let open = plain_line("consume t", Total::Unknown, &c, Duration::from_secs(1));
        assert!(!open.contains('%'), "{open}");
        assert_eq!(si(12_345.0), "12.3k");
        assert_eq!(si(2_500_000.0), "2.50M");
    }
}

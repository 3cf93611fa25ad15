//! Counting completed operations, the measured window, and the one-line JSON report.

use crate::Client;
use crate::procfs;
use anyhow::{Result, bail};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Shared by the workers of one workload and the thread measuring them: workers count each
/// completed operation and stop when told; the first failure stops everyone.
#[derive(Default)]
pub(crate) struct Progress {
    done: AtomicU64,
    stop: AtomicBool,
    error: Mutex<Option<String>>,
}

impl Progress {
    /// One more operation completed.
    pub(crate) fn completed(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether workers should keep going.
    pub(crate) fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }

    /// Records the first failure and stops every worker.
    pub(crate) fn fail(&self, error: impl std::fmt::Display) {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(|| error.to_string());
        self.stop.store(true, Ordering::Relaxed);
    }

    /// The first failure, if any.
    pub(crate) fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sleeps `d`, waking early once stopped; false if stopped.
    fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while self.running() {
            let now = Instant::now();
            if now >= until {
                return true;
            }
            std::thread::sleep((until - now).min(Duration::from_millis(50)));
        }
        false
    }
}

/// What happened inside the measured window.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    pub(crate) ops: u64,
    pub(crate) seconds: f64,
    pub(crate) cpu_s: f64,
    /// Established connections to the broker at the end of the window.
    pub(crate) connections: usize,
    /// Threads of the process at the end of the window.
    pub(crate) threads: u64,
}

/// Blocking: lets the workers warm up for `warmup`, measures them for `seconds`, then stops them.
/// Run it on a plain thread (not a runtime worker) while the workers run. `broker_port` is the
/// port whose connections are counted.
pub(crate) fn measure(progress: &Progress, warmup: Duration, seconds: Duration, broker_port: u16) -> Result<Window> {
    let result = (|| {
        if !progress.sleep(warmup) {
            bail!("stopped during warm-up");
        }
        let (t0, n0, c0) = (Instant::now(), progress.done.load(Ordering::Relaxed), procfs::cpu_seconds()?);
        if !progress.sleep(seconds) {
            bail!("stopped during the measured window");
        }
        let (t1, n1, c1) = (Instant::now(), progress.done.load(Ordering::Relaxed), procfs::cpu_seconds()?);
        Ok(Window {
            ops: n1 - n0,
            seconds: (t1 - t0).as_secs_f64(),
            cpu_s: c1 - c0,
            connections: procfs::connections_to_port(broker_port)?,
            threads: procfs::threads()?,
        })
    })();
    progress.stop.store(true, Ordering::Relaxed);
    match (result, progress.error()) {
        (_, Some(e)) => bail!("{e}"),
        (r, None) => r,
    }
}

/// The one line a `krab-bench` process prints.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub(crate) client: Client,
    pub(crate) workload: &'static str,
    pub(crate) concurrency: usize,
    pub(crate) window: Window,
    /// How the client was driven, for the reader.
    pub(crate) note: String,
}

impl Report {
    /// `{"client":..,"workload":..,"requests":n,"seconds":wall,"req_per_s":..,"cpu_s":user+sys,
    /// "cpu_us_per_req":..,"peak_rss_mb":..,...}`. CPU is the whole process over the window.
    pub(crate) fn to_json(&self) -> String {
        let w = &self.window;
        let per_s = w.ops as f64 / w.seconds;
        let cpu_us = if w.ops == 0 { f64::NAN } else { w.cpu_s * 1e6 / w.ops as f64 };
        let round = |x: f64, digits: i32| {
            let k = 10f64.powi(digits);
            (x * k).round() / k
        };
        serde_json::json!({
            "client": self.client.name(),
            "workload": self.workload,
            "requests": w.ops,
            "seconds": round(w.seconds, 3),
            "req_per_s": round(per_s, 1),
            "cpu_s": round(w.cpu_s, 2),
            "cpu_us_per_req": round(cpu_us, 2),
            "peak_rss_mb": round(procfs::peak_rss_mb().unwrap_or(f64::NAN), 1),
            "concurrency": self.concurrency,
            "broker_connections": w.connections,
            "threads": w.threads,
            "note": self.note,
        })
        .to_string()
    }
}

//! The flush loop's clock: tokio's (so paused-time tests drive every deadline), read once per
//! group of commands, with deadlines that saturate instead of overflowing.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The flush loop's clock readings for records it takes in: read once per
/// [`CLOCK_EVERY`] commands instead of once per record, so a record's timestamp and its
/// delivery-timeout start are at most that many records' handling (well under a millisecond)
/// away from the moment it arrived.
#[derive(Clone, Copy)]
pub(crate) struct Clock {
    pub(crate) now: Instant,
    pub(crate) wall_ms: i64,
}

/// Commands handled per clock reading.
pub(crate) const CLOCK_EVERY: usize = 256;

impl Clock {
    pub(crate) fn read() -> Self {
        let wall_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        Self { now: now(), wall_ms }
    }
}

/// `at + d`, saturating far in the future: `Duration::MAX` means "never", not a panic.
pub(crate) fn add(at: Instant, d: Duration) -> Instant {
    at.checked_add(d).unwrap_or_else(|| at + Duration::from_secs(100 * 365 * 86_400))
}

/// The time: tokio's clock, so that tests with paused time drive every deadline of the loop.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

pub(crate) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

//! What the admin scenarios share: an admin client on a bootstrap, per-resource results turned
//! into errors naming the resource, and waiting for the cluster to show a change (KRaft brokers
//! apply the controller's records a moment after the call returns).

use super::support::ms;
use anyhow::{Result, bail};
use krab_admin::{Admin, AdminConfig, Results};
use std::collections::BTreeMap;
use std::fmt::Display;
use std::time::{Duration, Instant};

/// An admin client with a 30 s call timeout.
pub(super) async fn admin(bootstrap: &str) -> Result<Admin> {
    let mut config = AdminConfig::new(bootstrap)?;
    config.client_id = "krab-it-admin".into();
    config.api_timeout = Duration::from_secs(30);
    config.request_timeout = Duration::from_secs(15);
    Ok(Admin::connect(config).await?)
}

/// Every resource's value, or the first resource's error (which names it).
pub(super) fn all<K: Ord + Display, T>(what: &str, results: Results<K, T>) -> Result<BTreeMap<K, T>> {
    let mut out = BTreeMap::new();
    for (k, r) in results {
        match r {
            Ok(v) => {
                out.insert(k, v);
            }
            Err(e) => bail!("{what}: {k}: {e}"),
        }
    }
    Ok(out)
}

/// The one resource's error, which must be there.
pub(super) fn refused<K: Ord + Display, T>(
    what: &str,
    mut results: Results<K, T>,
    key: &K,
) -> Result<krab_admin::AdminError> {
    match results.remove(key) {
        Some(Err(e)) => Ok(e),
        Some(Ok(_)) => bail!("{what}: {key} succeeded"),
        None => bail!("{what}: no result for {key}"),
    }
}

/// Polls `f` until it yields a value (`Ok(None)`: not yet), for at most `timeout`.
pub(super) async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<(T, Duration)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let started = Instant::now();
    let mut last = String::from("nothing yet");
    loop {
        match f().await {
            Ok(Some(v)) => return Ok((v, started.elapsed())),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if started.elapsed() > timeout {
            bail!("{what}: not seen within {} (last: {last})", ms(timeout));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

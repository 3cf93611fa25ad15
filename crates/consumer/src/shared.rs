//! What the application handle, the metadata task and the fetch tasks share: the partition
//! table behind a short lock (held for map operations only, never across an `.await`), and the
//! wake-ups between them (`Notify` keeps a permit, so a wake-up sent while nobody waits is not
//! lost).

use crate::state::{State, Wake};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    fetchers: Mutex<HashMap<i32, Arc<Notify>>>,
    pub(crate) metadata: Notify,
    closed: AtomicBool,
}

impl Shared {
    pub(crate) fn new(state: State) -> Self {
        Shared {
            state: Mutex::new(state),
            fetchers: Mutex::new(HashMap::new()),
            metadata: Notify::new(),
            closed: AtomicBool::new(false),
        }
    }

    /// The partition table, for a few map operations.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fetchers(&self) -> MutexGuard<'_, HashMap<i32, Arc<Notify>>> {
        self.fetchers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers broker `id`'s fetch task; returns its wake-up, or `None` if it already runs.
    pub(crate) fn register_fetcher(&self, id: i32) -> Option<Arc<Notify>> {
        let mut f = self.fetchers();
        if f.contains_key(&id) {
            return None;
        }
        let n = Arc::new(Notify::new());
        f.insert(id, n.clone());
        Some(n)
    }

    /// Forgets broker `id`'s fetch task (it ended).
    pub(crate) fn unregister_fetcher(&self, id: i32) {
        self.fetchers().remove(&id);
    }

    /// Delivers the wake-ups a state change asked for. Call without holding the lock.
    pub(crate) fn wake(&self, wake: Wake) {
        if wake.all_brokers {
            for n in self.fetchers().values() {
                n.notify_one();
            }
        } else if !wake.brokers.is_empty() {
            let f = self.fetchers();
            for id in &wake.brokers {
                if let Some(n) = f.get(id) {
                    n.notify_one();
                }
            }
        }
        if wake.metadata || wake.all_brokers {
            self.metadata.notify_one();
        }
        if let Some(w) = wake.consumer {
            w.wake();
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Stops every task.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for n in self.fetchers().values() {
            n.notify_one();
        }
        self.metadata.notify_one();
    }
}

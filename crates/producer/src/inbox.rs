//! The bounded queue from producer handles to the flush loop.
//!
//! A vector of commands behind a lock held only to push one command or to take them all, instead
//! of a channel message per record: a handle pushes a record with one short lock, the flush loop
//! takes every queued command at once (swapping vectors) and wakes at most once per batch. No
//! lock is held across an await. Order is kept: a flush sees every record pushed before it.

use crate::command::{Command, Envelope};
use crate::record::{DeliveryFuture, Record, Slots};
use krab_buffer::Reservation;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::Notify;

/// Why a command was not queued; the command is handed back.
pub(crate) enum PushError {
    /// The queue holds `capacity` commands.
    Full(Command),
    /// The flush loop stopped taking commands (the producer is closing).
    Closed(Command),
}

/// A record that was not queued, handed back with its reservation.
pub(crate) struct Refused {
    /// True: the queue was full; false: closed.
    pub(crate) full: bool,
    pub(crate) record: Record,
    pub(crate) reservation: Reservation,
}

struct State {
    commands: Vec<Command>,
    /// Delivery slots for the records pushed (allocated a group at a time, under this lock).
    slots: Slots,
    closed: bool,
    /// Every producer handle is gone.
    abandoned: bool,
}

pub(crate) struct Inbox {
    state: Mutex<State>,
    /// The flush loop waits here for commands.
    ready: Notify,
    /// Handles wait here for room.
    room: Notify,
    capacity: usize,
}

impl Inbox {
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State { commands: Vec::new(), slots: Slots::default(), closed: false, abandoned: false }),
            ready: Notify::new(),
            room: Notify::new(),
            capacity: capacity.max(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `command` if there is room now.
    // The error hands the command back unboxed: no allocation on the hot path.
    #[allow(clippy::result_large_err)]
    pub(crate) fn try_push(&self, command: Command) -> Result<(), PushError> {
        let mut state = self.lock();
        if state.closed {
            return Err(PushError::Closed(command));
        }
        if state.commands.len() >= self.capacity {
            return Err(PushError::Full(command));
        }
        let was_empty = state.commands.is_empty();
        state.commands.push(command);
        drop(state);
        if was_empty {
            // Stores a permit if the flush loop is busy: it cannot miss this batch.
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Queues a record if there is room now, with a fresh delivery slot; returns its future.
    // The error hands the record back unboxed: no allocation on the hot path.
    #[allow(clippy::result_large_err)]
    pub(crate) fn try_push_record(&self, record: Record, reservation: Reservation) -> Result<DeliveryFuture, Refused> {
        let mut state = self.lock();
        if state.closed || state.commands.len() >= self.capacity {
            let full = !state.closed;
            return Err(Refused { full, record, reservation });
        }
        let (reply, future) = state.slots.take();
        let was_empty = state.commands.is_empty();
        state.commands.push(Command::Send(Envelope::new(record, reservation, reply)));
        drop(state);
        if was_empty {
            self.ready.notify_one();
        }
        Ok(future)
    }

    /// [`try_push_record`](Self::try_push_record), waiting for room; hands the record back if
    /// the queue is closed.
    pub(crate) async fn push_record(
        &self,
        mut record: Record,
        mut reservation: Reservation,
    ) -> Result<DeliveryFuture, Refused> {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.try_push_record(record, reservation) {
                Ok(future) => return Ok(future),
                Err(refused) if !refused.full => return Err(refused),
                Err(refused) => (record, reservation) = (refused.record, refused.reservation),
            }
            room.await;
        }
    }

    /// Queues `command`, waiting for room; hands it back if the queue is closed.
    pub(crate) async fn push(&self, mut command: Command) -> Result<(), Command> {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            // Registered before looking, so that room made after the look wakes us.
            room.as_mut().enable();
            match self.try_push(command) {
                Ok(()) => return Ok(()),
                Err(PushError::Closed(back)) => return Err(back),
                Err(PushError::Full(back)) => command = back,
            }
            room.await;
        }
    }

    /// Resolves when commands may be waiting (or every handle is gone).
    pub(crate) async fn ready(&self) {
        self.ready.notified().await
    }

    /// Takes every queued command into `into` (which should be empty; its allocation is kept
    /// for the next batch) and wakes handles waiting for room. Returns whether every handle
    /// is gone.
    pub(crate) fn take(&self, into: &mut Vec<Command>) -> bool {
        let mut state = self.lock();
        std::mem::swap(&mut state.commands, into);
        let abandoned = state.abandoned;
        drop(state);
        if !into.is_empty() {
            self.room.notify_waiters();
        }
        abandoned
    }

    /// Refuses every later command (waiting pushes get theirs back). Queued ones stay for
    /// [`take`](Self::take).
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.room.notify_waiters();
    }

    /// The last producer handle went away.
    fn abandon(&self) {
        self.lock().abandoned = true;
        self.ready.notify_one();
    }
}

/// Shared by every clone of one producer; when the last clone drops, the flush loop is told
/// (it then delivers what is buffered and stops, as `close` would).
pub(crate) struct Handles(pub(crate) Arc<Inbox>);

impl std::fmt::Debug for Handles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox").field("capacity", &self.0.capacity).finish_non_exhaustive()
    }
}

impl Drop for Handles {
    fn drop(&mut self) {
        self.0.abandon();
    }
}

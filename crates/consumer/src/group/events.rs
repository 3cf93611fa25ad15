//! Rebalance events, handed to the application in order (never through a callback run under a
//! lock): what it was assigned, what it must give up (acknowledged, so that it can commit first),
//! and what it lost.

use futures_util::Stream;
use krab_buffer::TopicPartition;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::{mpsc, oneshot};

/// A change of the partitions this group member owns.
#[derive(Debug)]
#[non_exhaustive]
pub enum RebalanceEvent {
    /// These partitions are now this member's; records of them follow, from their committed
    /// offsets.
    Assigned(Vec<TopicPartition>),
    /// These partitions must be given up. The member keeps them until `ack` is acknowledged (or
    /// dropped), at most `max.poll.interval.ms`: commit what was processed first. With
    /// `enable.auto.commit`, their positions were committed before this event.
    Revoked {
        /// The partitions.
        partitions: Vec<TopicPartition>,
        /// Acknowledge when done with them.
        ack: RevokeAck,
    },
    /// These partitions were lost (the membership expired or was fenced) and may already be
    /// another member's: no commit of them is possible.
    Lost(Vec<TopicPartition>),
}

/// The acknowledgement a revocation waits for; dropping it acknowledges too.
#[derive(Debug)]
pub struct RevokeAck(Option<oneshot::Sender<()>>);

impl RevokeAck {
    pub(crate) fn new() -> (RevokeAck, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        (RevokeAck(Some(tx)), rx)
    }

    /// Done with the revoked partitions: ownership may move.
    pub fn ack(mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for RevokeAck {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// The stream of [`RebalanceEvent`]s ([`Consumer::rebalance_events`](crate::Consumer::rebalance_events)).
#[derive(Debug)]
pub struct RebalanceEvents {
    pub(crate) rx: mpsc::UnboundedReceiver<RebalanceEvent>,
}

impl Stream for RebalanceEvents {
    type Item = RebalanceEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<RebalanceEvent>> {
        self.rx.poll_recv(cx)
    }
}

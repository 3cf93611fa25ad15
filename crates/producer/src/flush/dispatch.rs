//! Sending: draining ready batches by leader and handing them to the per-broker sender tasks.

use super::{Event, FlushLoop, Job, leader};
use crate::error::{Error, ErrorKind};
use crate::record::DeliverySender;
use crate::sender::{self, ProduceJob};
use bytes::Bytes;
use krab_buffer::{Payload, ProducerBatch};
use std::time::Instant;

impl FlushLoop {
    pub(super) fn dispatch(&mut self, now: Instant) {
        loop {
            let snapshot = &self.snapshot;
            let retry_at = &self.retry_at;
            let held = &self.held;
            let drained = self.acc.drain(now, |tp| leader(snapshot, retry_at, held, now, tp));
            if drained.is_empty() {
                return;
            }
            for (broker, batches) in drained {
                self.send_job(broker, batches);
            }
        }
    }

    pub(super) fn send_job(&mut self, broker: i32, mut batches: Vec<ProducerBatch<DeliverySender>>) {
        let id = self.next_job;
        self.next_job += 1;
        // The sender encodes the payloads; the outcome brings back the bytes each was sent as.
        let payloads = batches
            .iter_mut()
            .map(|b| (b.tp.clone(), std::mem::replace(&mut b.payload, Payload::Encoded(Bytes::new()))))
            .collect();
        self.jobs.insert(id, Job { broker, generation: self.snapshot.generation, batches });
        let job = ProduceJob { id, batches: payloads };
        let spawn = |this: &Self| {
            let events = this.events_tx.clone();
            let report = move |outcome| events.send(Event::Produced(outcome)).is_ok();
            sender::spawn(broker, this.cluster.clone(), this.settings, this.offload.clone(), report)
        };
        if !self.senders.contains_key(&broker) {
            let sender = spawn(self);
            self.senders.insert(broker, sender);
        }
        let sender = self.senders.get(&broker).expect("inserted above");
        if sender.send(job).is_err() {
            // The sender task is gone (a bug: it never ends while we hold its channel). The jobs
            // it held will never be answered and their bytes went with it: fail their records
            // now rather than wait forever (with idempotence this bumps the epoch, closing the
            // gap in sequence numbers), and start a fresh sender for what comes next.
            tracing::error!(broker, "a sender task stopped; failing the batches it held");
            self.senders.remove(&broker);
            let lost: Vec<u64> = self.jobs.iter().filter(|(_, j)| j.broker == broker).map(|(id, _)| *id).collect();
            for id in lost {
                let Some(job) = self.jobs.remove(&id) else { continue };
                for batch in job.batches {
                    let error = Error::new(
                        ErrorKind::Cluster,
                        format!("{}: the sender task of broker {broker} stopped", batch.tp),
                    );
                    // Its request may have been written.
                    self.sequences_of(&batch.tp, |s| s.may_be_written(batch.id));
                    self.fail_batch(batch, error);
                }
            }
        }
    }
}

//! The catch-up of one consumer: read a batch, deliver it, move the checkpoint; retry, then
//! park on failure.

use std::sync::Arc;

use tracing::Instrument;

use super::consumer::{Consumer, ConsumerKind, Envelope, EventContext};
use super::partition::Slot;
use super::retry::{Attempts, Failure};
use super::{CatchUp, DispatchError, Dispatcher};
use crate::codec::collect_references;
use crate::command::BoxError;
use crate::event::EventRegistry;
use crate::store::ProjectionTx;
use crate::store::TxWork;
use crate::store::{RecordedEvent, StoreError};
use crate::sync::lock;
use futures_util::StreamExt;

/// An event ready for a consumer, or why it is not, with its position.
type Prepared = (u64, Result<Envelope, BoxError>);

/// The stretch of the log a batch covers for one consumer: its checkpoint `name` moves from
/// `from` to `last`, the position of the last event read (whether the consumer wanted it or not).
#[derive(Clone, Copy)]
struct Window<'a> {
    consumer: &'a dyn Consumer,
    name: &'a str,
    from: u64,
    last: u64,
}

/// How a batch ended.
enum Outcome {
    /// Handled this many events; the checkpoint is at the batch's end.
    Done(u64),
    /// The consumer was parked at a failing event.
    Parked,
    /// Handled this many events, then stopped before one whose destination is unavailable;
    /// the checkpoint is just before it.
    Unavailable(u64),
    /// Another instance moved the checkpoint: stop and let it carry on.
    Moved,
}

/// A projection's batch, run inside the store's transaction.
struct Batch<'a> {
    dispatcher: &'a Dispatcher,
    consumer: &'a dyn Consumer,
    envelopes: &'a [Envelope],
}

#[async_trait::async_trait]
impl TxWork for Batch<'_> {
    async fn run(&self, tx: &mut ProjectionTx<'_>) -> Result<(), BoxError> {
        for envelope in self.envelopes {
            let mut cx = EventContext {
                bus: &self.dispatcher.bus,
                services: &self.dispatcher.services,
                store: &self.dispatcher.store,
                consumer: self.consumer.name(),
                envelope,
                tx: tx.reborrow(),
            };
            let work = self.consumer.handle(&mut cx);
            crate::telemetry::handling(self.consumer.name(), envelope.recorded(), work).await?;
        }
        Ok(())
    }
}

impl Dispatcher {
    /// Catches one consumer up with the head of the log: its one checkpoint, or the partitions
    /// this dispatcher takes (side by side).
    pub(crate) async fn run_consumer(
        &self,
        consumer: &Arc<dyn Consumer>,
        round: &mut CatchUp,
    ) -> Result<(), DispatchError> {
        let count = self.partitions_of(&**consumer);
        self.check_layout(&**consumer, count).await?;
        let slots = if count > 1 {
            self.share(consumer.name(), count).await?
        } else {
            vec![Slot::whole(consumer.name())]
        };
        self.run_slots(consumer, &slots, round, &mut |_| {}).await
    }

    /// Runs `slots` of `consumer` side by side, reporting the mean of their positions.
    pub(crate) async fn run_slots(
        &self,
        consumer: &Arc<dyn Consumer>,
        slots: &[Slot],
        round: &mut CatchUp,
        report: &mut (dyn FnMut(u64) + Send),
    ) -> Result<(), DispatchError> {
        if let [slot] = slots {
            return self.run_slot(consumer, slot, round, report).await;
        }
        let positions = std::sync::Mutex::new(vec![0; slots.len()]);
        let report = std::sync::Mutex::new(report);
        // At most `partition_concurrency` at a time: each holds a batch and, for a
        // projection, a transaction.
        let mut rounds = vec![CatchUp::default(); slots.len()];
        let runs: Vec<crate::error::BoxFuture<'_, Result<(), DispatchError>>> = slots
            .iter()
            .zip(rounds.iter_mut())
            .enumerate()
            .map(
                |(i, (slot, r))| -> crate::error::BoxFuture<'_, Result<(), DispatchError>> {
                    let positions = &positions;
                    let report = &report;
                    Box::pin(async move {
                        let mut mine = |position: u64| {
                            let mean = {
                                let mut positions = lock(positions);
                                positions[i] = position;
                                positions.iter().sum::<u64>() / positions.len() as u64
                            };
                            (lock(report))(mean);
                        };
                        self.run_slot(consumer, slot, r, &mut mine).await
                    })
                },
            )
            .collect();
        let results: Vec<Result<(), DispatchError>> = futures_util::stream::iter(runs)
            .buffer_unordered(self.config.partition_concurrency.max(1))
            .collect()
            .await;
        for r in rounds {
            round.handled += r.handled;
            round.not_claimed.extend(r.not_claimed);
            round.parked.extend(r.parked);
            round.unavailable.extend(r.unavailable);
        }
        results.into_iter().collect()
    }

    /// Claims the checkpoint `name`, or renews this instance's claim; `false`, noted in
    /// `round`, when another instance holds it.
    async fn claim_slot(
        &self,
        name: &str,
        renewal: bool,
        round: &mut CatchUp,
    ) -> Result<bool, DispatchError> {
        let claimed = self
            .store
            .claim(name, self.owner, self.config.lease)
            .await?;
        self.leases.note(name, claimed, renewal);
        if !claimed {
            round.not_claimed.push(name.to_owned());
        }
        Ok(claimed)
    }

    /// Catches one checkpoint of a consumer up with the head of the log.
    async fn run_slot(
        &self,
        consumer: &Arc<dyn Consumer>,
        slot: &Slot,
        round: &mut CatchUp,
        report: &mut (dyn FnMut(u64) + Send),
    ) -> Result<(), DispatchError> {
        let name = slot.key.as_str();
        if !self.claim_slot(name, false, round).await? {
            return Ok(());
        }
        let mut state = self.store.consumer_state(name).await?;
        if state.parked.is_some() {
            parked(name, round);
            return Ok(());
        }
        let mut first = true;
        loop {
            // Renew the lease per batch, so a long catch-up keeps it; stop if it was lost.
            if !first {
                if !self.claim_slot(name, true, round).await? {
                    return Ok(());
                }
                if let Some(partition) = slot.partition
                    && !self.keep(consumer.name(), partition).await?
                {
                    // An instance joined: hand this partition over between two batches.
                    self.store.release(name, self.owner).await?;
                    self.leases.note(name, false, false);
                    return Ok(());
                }
            }
            first = false;
            let events = self
                .store
                .read_all(state.position, self.config.batch_size)
                .await?;
            let Some(last) = events.last().map(|e| e.position) else {
                // Caught up with the head as it was read.
                crate::metrics::consumer(name, 0, false);
                return Ok(());
            };
            let wanted: Vec<RecordedEvent> = events
                .into_iter()
                .filter(|e| consumer.subscribes_to(&e.event_name) && slot.contains(&e.stream_id))
                .collect();
            let span = crate::telemetry::batch_span(
                consumer.name(),
                slot.partition,
                state.position,
                last,
                wanted.len(),
            );
            let window = Window {
                consumer: &**consumer,
                name,
                from: state.position,
                last,
            };
            let outcome = async {
                let prepared = self.prepare(wanted, consumer.reads_personal_data()).await?;
                match consumer.kind() {
                    ConsumerKind::Projection => self.project(window, prepared).await,
                    _ => self.deliver(window, prepared).await,
                }
            }
            .instrument(span)
            .await?;
            match outcome {
                Outcome::Done(handled) => {
                    crate::metrics::handled(consumer.name(), handled);
                    round.handled += handled;
                    state.position = last;
                    report(last);
                }
                Outcome::Parked => {
                    parked(name, round);
                    return Ok(());
                }
                Outcome::Unavailable(handled) => {
                    crate::metrics::handled(consumer.name(), handled);
                    round.handled += handled;
                    round.unavailable.push(name.to_owned());
                    return Ok(());
                }
                Outcome::Moved => return Ok(()),
            }
        }
    }

    /// Resolves the personal data of a batch in one round trip per store (unless the consumer
    /// reads none), and upcasts its events; an event that fails (an unknown version, a
    /// tampered value) gets its error when it is decoded. A failing vault fails the round, to
    /// be tried again.
    async fn prepare(
        &self,
        events: Vec<RecordedEvent>,
        reads_personal_data: bool,
    ) -> Result<Vec<Prepared>, DispatchError> {
        let registry = EventRegistry::global();
        let engine = self.bus.engine();
        // References are read from the payloads as stored (see `Repository::load`).
        let mut references = Vec::new();
        let mut personal = Vec::with_capacity(events.len());
        if reads_personal_data {
            for event in &events {
                let before = references.len();
                collect_references(&event.event_name, &event.payload, &mut references);
                personal.push(references.len() > before);
            }
        } else {
            // Nothing is decrypted, so nothing the consumer says can quote a personal value.
            personal.resize(events.len(), false);
        }
        let resolved = Arc::new(engine.resolve_personal(&references).await?);
        let bound: Arc<std::collections::HashMap<_, _>> =
            Arc::new(references.into_iter().map(|r| (r.id, r.field)).collect());
        Ok(events
            .into_iter()
            .zip(personal)
            .map(|(mut event, personal)| {
                let position = event.position;
                let payload = std::mem::take(&mut event.payload);
                // The stored form is kept apart only when upcasting will change it.
                let stored = registry
                    .get(&event.event_name)
                    .is_some_and(|r| r.version > event.schema_version)
                    .then(|| payload.clone());
                let envelope = registry
                    .upcast(&event.event_name, event.schema_version, payload)
                    .map_err(BoxError::from)
                    .map(|payload| Envelope {
                        event,
                        payload,
                        stored,
                        resolved: Arc::clone(&resolved),
                        personal,
                        bound: Arc::clone(&bound),
                    });
                (position, envelope)
            })
            .collect())
    }

    /// Reads the personal values of `envelopes` again before they are retried, in one round
    /// trip per store. A retry may come seconds after the batch was prepared (transaction
    /// conflicts are tried again up to 20 times): a value erased meanwhile is then given as
    /// erased, not as the plaintext decrypted before, which another partition's handling of the
    /// erasure fact could no longer reach once it is written.
    async fn refresh(&self, envelopes: &mut [Envelope]) -> Result<(), DispatchError> {
        let mut references = Vec::new();
        for envelope in envelopes.iter().filter(|e| e.personal) {
            let stored = envelope.stored.as_ref().unwrap_or(&envelope.payload);
            collect_references(&envelope.event.event_name, stored, &mut references);
        }
        if references.is_empty() {
            return Ok(());
        }
        let resolved = Arc::new(self.bus.engine().resolve_personal(&references).await?);
        for envelope in envelopes.iter_mut().filter(|e| e.personal) {
            envelope.resolved = Arc::clone(&resolved);
        }
        Ok(())
    }

    async fn backoff(&self, attempt: u32) {
        let delay = self
            .config
            .backoff
            .saturating_mul(1 << attempt.min(16))
            .min(self.config.max_backoff);
        tokio::time::sleep(delay).await;
    }

    /// Listeners and process managers: handle each event, retrying; move the checkpoint once
    /// per batch (a crash before that redelivers the batch: at least once).
    async fn deliver(
        &self,
        window: Window<'_>,
        envelopes: Vec<Prepared>,
    ) -> Result<Outcome, DispatchError> {
        let mut handled = 0;
        let mut envelopes = envelopes;
        for (position, envelope) in &mut envelopes {
            let position = *position;
            let mut attempts = Attempts::new(self.config.max_attempts);
            loop {
                let result = match envelope {
                    Ok(envelope) => {
                        let mut cx = EventContext {
                            bus: &self.bus,
                            services: &self.services,
                            store: &self.store,
                            consumer: window.consumer.name(),
                            envelope,
                            tx: ProjectionTx::none(),
                        };
                        let work = window.consumer.handle(&mut cx);
                        crate::telemetry::handling(
                            window.consumer.name(),
                            envelope.recorded(),
                            work,
                        )
                        .await
                        .map_err(|error| Failure::new(error, envelope.carries_personal_data()))
                    }
                    Err(error) => Err(Failure::new(error.to_string().into(), false)),
                };
                let Err(Failure {
                    error,
                    unavailable,
                    conflict,
                }) = result
                else {
                    break;
                };
                if unavailable {
                    // Not the event's fault: keep what was done, and try it again next round.
                    tracing::warn!(consumer = window.name, position, %error, "unavailable; trying again on the next round");
                    if position > window.from + 1
                        && !self.advance(window.name, window.from, position - 1).await?
                    {
                        return Ok(Outcome::Moved);
                    }
                    return Ok(Outcome::Unavailable(handled));
                }
                if let Some(step) = attempts.failed(conflict) {
                    tracing::debug!(consumer = window.name, position, failures = attempts.failures, conflicts = attempts.conflicts, %error, "retrying");
                    self.backoff(step).await;
                    if let Ok(envelope) = envelope {
                        self.refresh(std::slice::from_mut(envelope)).await?;
                    }
                    continue;
                }
                return self
                    .park_at(window.name, window.from, position, &error)
                    .await;
            }
            handled += 1;
        }
        if !self.advance(window.name, window.from, window.last).await? {
            return Ok(Outcome::Moved);
        }
        Ok(Outcome::Done(handled))
    }

    /// Keeps what succeeded before the poison event at `position`, and parks there.
    async fn park_at(
        &self,
        name: &str,
        from: u64,
        position: u64,
        error: &BoxError,
    ) -> Result<Outcome, DispatchError> {
        if position > from + 1 && !self.advance(name, from, position - 1).await? {
            return Ok(Outcome::Moved);
        }
        match self.store.park(name, position, &error.to_string()).await {
            Ok(()) => {}
            // Moved or reset meanwhile: whoever did it carries on from there.
            Err(StoreError::CheckpointMoved { .. }) => return Ok(Outcome::Moved),
            Err(error) => return Err(error.into()),
        }
        tracing::error!(consumer = name, position, %error, "consumer parked");
        Ok(Outcome::Parked)
    }

    /// Moves a checkpoint; false if another instance moved it first.
    async fn advance(&self, name: &str, from: u64, to: u64) -> Result<bool, DispatchError> {
        match self.store.advance(name, from, to).await {
            Ok(()) => Ok(true),
            Err(StoreError::CheckpointMoved { .. }) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// Projections: the whole batch and the checkpoint in one transaction; on repeated failure,
    /// event by event to find the one to park at.
    async fn project(
        &self,
        window: Window<'_>,
        prepared: Vec<Prepared>,
    ) -> Result<Outcome, DispatchError> {
        if prepared.iter().all(|(_, e)| e.is_ok()) {
            let mut envelopes: Vec<Envelope> =
                prepared.into_iter().filter_map(|(_, e)| e.ok()).collect();
            let personal = envelopes.iter().any(Envelope::carries_personal_data);
            let mut attempts = Attempts::new(self.config.max_attempts);
            loop {
                let batch = Batch {
                    dispatcher: self,
                    consumer: window.consumer,
                    envelopes: &envelopes,
                };
                match self
                    .store
                    .advance_with(window.name, window.from, window.last, &batch)
                    .await
                {
                    Ok(Ok(())) => return Ok(Outcome::Done(envelopes.len() as u64)),
                    Ok(Err(error)) => {
                        let Failure {
                            error, conflict, ..
                        } = Failure::new(error, personal);
                        tracing::debug!(consumer = window.name, failures = attempts.failures, conflicts = attempts.conflicts, conflict, %error, "projection batch failed");
                        match attempts.failed(conflict) {
                            Some(step) => {
                                self.backoff(step).await;
                                self.refresh(&mut envelopes).await?;
                            }
                            None => break,
                        }
                    }
                    Err(StoreError::CheckpointMoved { .. }) => return Ok(Outcome::Moved),
                    Err(error) => match attempts.refused_at_commit(&error) {
                        Some(step) => {
                            tracing::debug!(consumer = window.name, %error, "projection batch refused at commit");
                            self.backoff(step).await;
                            self.refresh(&mut envelopes).await?;
                        }
                        None => return Err(error.into()),
                    },
                }
            }
            let prepared = envelopes
                .into_iter()
                .map(|e| (e.recorded().position, Ok(e)))
                .collect();
            return self.project_one_by_one(window, prepared).await;
        }
        self.project_one_by_one(window, prepared).await
    }

    async fn project_one_by_one(
        &self,
        window: Window<'_>,
        envelopes: Vec<Prepared>,
    ) -> Result<Outcome, DispatchError> {
        let mut from = window.from;
        let mut handled = 0;
        let mut envelopes = envelopes;
        for (position, envelope) in &mut envelopes {
            let position = *position;
            let mut attempts = Attempts::new(self.config.max_attempts);
            let failed = loop {
                let result = match envelope {
                    Ok(envelope) => {
                        let batch = Batch {
                            dispatcher: self,
                            consumer: window.consumer,
                            envelopes: std::slice::from_ref(envelope),
                        };
                        self.store
                            .advance_with(window.name, from, position, &batch)
                            .await
                            .map(|result| {
                                result.map_err(|error| {
                                    Failure::new(error, envelope.carries_personal_data())
                                })
                            })
                    }
                    Err(error) => Ok(Err(Failure::new(error.to_string().into(), false))),
                };
                match result {
                    Ok(Ok(())) => break None,
                    Ok(Err(failure)) => match attempts.failed(failure.conflict) {
                        Some(step) => self.backoff(step).await,
                        None => break Some(failure.error),
                    },
                    Err(StoreError::CheckpointMoved { .. }) => return Ok(Outcome::Moved),
                    Err(error) => match attempts.refused_at_commit(&error) {
                        Some(step) => self.backoff(step).await,
                        None => return Err(error.into()),
                    },
                }
                if let Ok(envelope) = envelope {
                    self.refresh(std::slice::from_mut(envelope)).await?;
                }
            };
            if let Some(error) = failed {
                return self.park_at(window.name, from, position, &error).await;
            }
            from = position;
            handled += 1;
        }
        if from != window.last && !self.advance(window.name, from, window.last).await? {
            return Ok(Outcome::Moved);
        }
        Ok(Outcome::Done(handled))
    }
}

/// Notes in `round` (and in the metrics) that the checkpoint `name` is parked.
fn parked(name: &str, round: &mut CatchUp) {
    crate::metrics::consumer(name, 0, true);
    round.parked.push(name.to_owned());
}

#[cfg(test)]
mod tests {
    /// A consumer may hold `&EventContext` across an `.await` in a future that must be `Send`.
    #[test]
    fn an_event_context_is_send_and_sync() {
        fn send_and_sync<T: Send + Sync>() {}
        send_and_sync::<super::EventContext<'static>>();
    }
}

//! Group commit: one task per instance writes the saga log for every executor and every `StartSaga`.
//!
//! Writers queue their write and wait for its answer. Whenever no write is in flight, the committer takes
//! everything queued — starts and step outcomes alike, in one statement, so one commit — and answers
//! each writer once that statement has committed. Nothing waits on a timer: at low load a batch is one
//! write, as fast as writing alone; under load, batches grow while the previous one is in flight, and
//! PostgreSQL transactions per saga fall well below one per step. Each row stays fenced on its own
//! (revision, owner, epoch), so a saga that moved on fails only its own write.
//!
//! The heartbeat's lease renewal runs here too, after the batch it arrived with: a renewal touches every
//! saga the instance drives, a batch many of them, and two such statements running side by side lock rows
//! in different orders and deadlock each other.

use std::sync::Arc;
use std::time::Instant;

use saga_core::{Saga, SagaId, Transition};
use saga_store::{Committed, Created, LeaseAfter, SagaStore, StoreError};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::Engine;

/// Most writes taken into one batch: bounds one statement's size and the time its writers wait.
const MAX_BATCH: usize = 512;

/// A write waiting for the committer.
#[derive(Debug)]
pub(crate) enum Pending {
    /// A new saga (`StartSaga`).
    Start(Box<Start>),
    /// A transition of a saga this instance drives.
    Write(Write),
    /// The heartbeat's renewal of the leases on these sagas; the reply lists those still held.
    Renew {
        ids: Vec<SagaId>,
        reply: oneshot::Sender<Result<Vec<SagaId>, StoreError>>,
    },
}

/// A new saga and who waits for it.
#[derive(Debug)]
pub(crate) struct Start {
    saga: Saga,
    reply: oneshot::Sender<Result<Created, StoreError>>,
}

/// A transition and who waits for it; `None` in the reply when the saga moved on.
#[derive(Debug)]
pub(crate) struct Write {
    transition: Arc<Transition>,
    lease: LeaseAfter,
    reply: oneshot::Sender<Result<Option<Committed>, StoreError>>,
}

/// The writers' side of the queue.
#[derive(Debug, Clone)]
pub(crate) struct Committer {
    queue: mpsc::UnboundedSender<Pending>,
}

impl Committer {
    /// A committer and the receiving end its task runs on.
    pub(crate) fn new() -> (Self, mpsc::UnboundedReceiver<Pending>) {
        let (queue, pending) = mpsc::unbounded_channel();
        (Self { queue }, pending)
    }

    /// Persists a new saga once the committer has written it. `None` when the committer is gone (the
    /// instance has shut down).
    pub(crate) async fn start(&self, saga: Saga) -> Option<Result<Created, StoreError>> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending::Start(Box::new(Start { saga, reply })))
            .ok()?;
        answer.await.ok()
    }

    /// Writes a transition; `Ok(None)` when the saga moved on (the write changed nothing), `None` when
    /// the committer is gone.
    pub(crate) async fn write(
        &self,
        transition: Arc<Transition>,
        lease: LeaseAfter,
    ) -> Option<Result<Option<Committed>, StoreError>> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending::Write(Write {
                transition,
                lease,
                reply,
            }))
            .ok()?;
        answer.await.ok()
    }
}

impl Committer {
    /// Renews this instance's leases on `ids` once the batch in flight is written; the ids still held,
    /// or `None` when the committer is gone.
    pub(crate) async fn renew(&self, ids: Vec<SagaId>) -> Option<Result<Vec<SagaId>, StoreError>> {
        let (reply, answer) = oneshot::channel();
        self.queue.send(Pending::Renew { ids, reply }).ok()?;
        answer.await.ok()
    }
}

impl<S: SagaStore> Engine<S> {
    /// The committer task: batches until the engine drains (its executors are done by then).
    pub(crate) async fn commit_loop(
        self: Arc<Self>,
        mut pending: mpsc::UnboundedReceiver<Pending>,
    ) {
        loop {
            let first = tokio::select! {
                first = pending.recv() => match first {
                    Some(first) => first,
                    None => return,
                },
                () = self.background_stop.cancelled() => return,
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match pending.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            self.write_batch(batch).await;
        }
    }

    async fn write_batch(&self, batch: Vec<Pending>) {
        let mut starts = Vec::new();
        let mut writes = Vec::new();
        let mut renewals = Vec::new();
        for pending in batch {
            match pending {
                Pending::Start(start) => starts.push(*start),
                Pending::Write(write) => writes.push(write),
                Pending::Renew { ids, reply } => renewals.push((ids, reply)),
            }
        }
        if starts.is_empty() || writes.is_empty() {
            tokio::join!(self.write_starts(starts), self.write_transitions(writes));
        } else {
            self.write_both(starts, writes).await;
        }
        for (ids, reply) in renewals {
            let renewed = self.store.renew(&self.owner, &ids).await;
            self.observe(&renewed);
            let _ = reply.send(renewed);
        }
    }

    /// Writes starts and transitions in one statement, so one commit. Should the database refuse a row,
    /// the statement wrote nothing: they are written apart, where that row fails only its own writer.
    async fn write_both(&self, starts: Vec<Start>, writes: Vec<Write>) {
        let sagas: Vec<&Saga> = starts.iter().map(|start| &start.saga).collect();
        let batch: Vec<(&Transition, LeaseAfter)> =
            writes.iter().map(|w| (&*w.transition, w.lease)).collect();
        let writing = Instant::now();
        let written = self
            .store
            .create_and_commit_many(&sagas, &batch, &self.owner)
            .await;
        self.metrics.commit_took(writing.elapsed());
        drop((sagas, batch));
        self.observe(&written);
        match written {
            Ok((created, committed)) => {
                answer_starts(starts, Ok(created));
                answer_writes(writes, Ok(committed));
            }
            Err(e) if e.is_data_error() => {
                warn!(error = %e, "a batch was refused; writing its starts and transitions apart");
                tokio::join!(self.write_starts(starts), self.write_transitions(writes));
            }
            Err(e) => {
                answer_starts(starts, Err(e.clone()));
                answer_writes(writes, Err(e));
            }
        }
    }

    async fn write_starts(&self, starts: Vec<Start>) {
        if starts.is_empty() {
            return;
        }
        let sagas: Vec<&Saga> = starts.iter().map(|start| &start.saga).collect();
        let writing = Instant::now();
        let created = self.store.create_many(&sagas, &self.owner).await;
        self.metrics.commit_took(writing.elapsed());
        self.observe(&created);
        answer_starts(starts, created);
    }

    async fn write_transitions(&self, writes: Vec<Write>) {
        if writes.is_empty() {
            return;
        }
        let batch: Vec<(&Transition, LeaseAfter)> =
            writes.iter().map(|w| (&*w.transition, w.lease)).collect();
        let writing = Instant::now();
        let committed = self.store.commit_many(&batch, &self.owner).await;
        self.metrics.commit_took(writing.elapsed());
        drop(batch);
        self.observe(&committed);
        match committed {
            // One row the database refuses fails the whole statement: write them one by one, so only
            // that saga hears of it.
            Err(e) if e.is_data_error() && writes.len() > 1 => {
                warn!(error = %e, writes = writes.len(), "a batch was refused; writing it one by one");
                for write in writes {
                    let one = self
                        .store
                        .commit_many(&[(&write.transition, write.lease)], &self.owner)
                        .await
                        .map(|mut c| c.pop().flatten());
                    drop(write.transition);
                    let _ = write.reply.send(one);
                }
            }
            committed => answer_writes(writes, committed),
        }
    }
}

/// Answers each start with what creating its saga did, or with the error that failed them all.
fn answer_starts(
    starts: Vec<Start>,
    created: Result<Vec<Result<Created, StoreError>>, StoreError>,
) {
    match created {
        Ok(created) => {
            for (start, created) in starts.into_iter().zip(created) {
                // A StartSaga that went away (cancelled) still has its saga: the caller retries with
                // its idempotency key, or the saga simply runs.
                let _ = start.reply.send(created);
            }
        }
        Err(e) => {
            for start in starts {
                let _ = start.reply.send(Err(e.clone()));
            }
        }
    }
}

/// Answers each writer with what its write committed, or with the error that failed them all.
fn answer_writes(writes: Vec<Write>, committed: Result<Vec<Option<Committed>>, StoreError>) {
    match committed {
        Ok(committed) => {
            for (write, committed) in writes.into_iter().zip(committed) {
                // Let go of the transition first: its writer takes it back without a copy.
                drop(write.transition);
                let _ = write.reply.send(Ok(committed));
            }
        }
        Err(e) => {
            for write in writes {
                drop(write.transition);
                let _ = write.reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use chrono::Utc;
    use saga_core::{Definition, JsonMap};
    use saga_store::PgStore;
    use saga_testkit::TestDatabase;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::{EngineSettings, Participants};

    const DEFINITION: &str = "
name: shop
version: 1
timeout: 5m
steps:
  - {name: CHARGE, participant: shop, action: Charge, compensate: Refund}
";

    #[tokio::test]
    async fn a_row_refused_in_a_batch_of_starts_and_transitions_fails_only_its_own_writer() {
        let db = TestDatabase::create("committer").await;
        let store = PgStore::connect(&db.url(), 4).await.expect("connect");
        store.migrate().await.expect("migrate");
        let participants: HashSet<String> = ["shop".to_owned()].into();
        let definition = Arc::new(Definition::from_yaml(DEFINITION, &participants).expect("valid"));
        let engine = Engine::new(
            store.clone(),
            Participants::new(&HashMap::new(), 1, None).expect("participants"),
            HashMap::from([("shop".to_owned(), Arc::clone(&definition))]),
            &EngineSettings::default(),
            CancellationToken::new(),
        );
        let new_saga = || Saga::new(Arc::clone(&definition), JsonMap::new(), None, Utc::now());
        let running = store
            .create(&new_saga(), &engine.owner)
            .await
            .expect("create")
            .saga;
        let refused = saga_testkit::unstorable::first_step(&running);
        let fresh = new_saga();
        let (start_reply, started) = oneshot::channel();
        let (write_reply, written) = oneshot::channel();

        engine
            .write_batch(vec![
                Pending::Start(Box::new(Start {
                    saga: fresh.clone(),
                    reply: start_reply,
                })),
                Pending::Write(Write {
                    transition: Arc::new(refused),
                    lease: LeaseAfter::Keep,
                    reply: write_reply,
                }),
            ])
            .await;

        let created = started
            .await
            .expect("answered")
            .expect("the start, written apart, succeeds");
        assert!(created.created);
        assert!(store.load(fresh.id).await.expect("load").is_some());
        let error = written
            .await
            .expect("answered")
            .expect_err("the refused write fails");
        assert!(error.is_data_error(), "{error}");
        let stored = store.load(running.id).await.expect("load").expect("saga");
        assert_eq!(
            stored.revision, running.revision,
            "nothing of it was written"
        );
    }
}

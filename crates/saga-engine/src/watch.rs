//! `WatchSaga` support: executors publish every committed saga, watchers of that saga receive it.
//!
//! Channels exist only while someone watches: a saga nobody watches costs one map lookup per commit.
//! Changes made by another replica never pass through this instance, so one refresher per instance (see
//! `recovery.rs`) re-reads every watched saga that changed, in one statement, about once a second — the
//! cost does not grow with the number of watchers. Open watches per instance are capped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use saga_core::{Saga, SagaId};
use tokio::sync::broadcast;

use crate::EngineError;

/// Commits a slow watcher may fall behind by; past it, it skips to the newest ones it can still read.
const CHANNEL_CAPACITY: usize = 64;

/// One watched saga: its channel, the newest revision published on it, and how many of its receivers
/// follow every revision (`WatchSaga`); the others (a `StartSaga` that waits) need only the last one.
#[derive(Debug)]
struct Channel {
    sender: broadcast::Sender<Arc<Saga>>,
    revision: i64,
    followers: usize,
}

/// The watched sagas and their channels.
#[derive(Debug)]
pub(crate) struct Watchers {
    channels: Mutex<HashMap<SagaId, Channel>>,
    open: AtomicUsize,
    limit: usize,
}

impl Watchers {
    /// No more than `limit` watches open at once.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            channels: Mutex::default(),
            open: AtomicUsize::new(0),
            limit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SagaId, Channel>> {
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands a committed saga to its watchers, if any, unless they have seen this revision already. A
    /// saga only waited for (no follower) is handed over once, terminal.
    pub(crate) fn publish(&self, saga: &Saga) {
        let mut channels = self.lock();
        if let Some(channel) = channels.get_mut(&saga.id)
            && saga.revision > channel.revision
        {
            channel.revision = saga.revision;
            if channel.followers == 0 && !saga.status.is_terminal() {
                return;
            }
            if channel.sender.send(Arc::new(saga.clone())).is_err() {
                channels.remove(&saga.id);
            }
        }
    }

    /// Every watched saga with the newest revision its watchers have, for the refresher.
    pub(crate) fn watched(&self) -> Vec<(SagaId, i64)> {
        self.lock()
            .iter()
            .map(|(id, channel)| (*id, channel.revision))
            .collect()
    }

    /// Subscribes to the commits of saga `id`, of which `revision` was already read; refused beyond the
    /// limit. The subscription ends its channel when dropped last.
    pub(crate) fn subscribe(self: &Arc<Self>, id: SagaId) -> Result<Subscription, EngineError> {
        let open = self.open.fetch_add(1, Ordering::Relaxed);
        if open >= self.limit {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err(EngineError::TooManyWatches { limit: self.limit });
        }
        Ok(self.receive(id, true))
    }

    /// Subscribes a `StartSaga` that waits for its saga's outcome. Not counted against the limit: the
    /// saga was just accepted, so such waits are bounded by the sagas in flight.
    pub(crate) fn subscribe_waiter(self: &Arc<Self>, id: SagaId) -> Subscription {
        self.receive(id, false)
    }

    fn receive(self: &Arc<Self>, id: SagaId, counted: bool) -> Subscription {
        let mut channels = self.lock();
        let channel = channels.entry(id).or_insert_with(|| Channel {
            sender: broadcast::channel(CHANNEL_CAPACITY).0,
            revision: -1,
            followers: 0,
        });
        channel.followers += usize::from(counted);
        let receiver = channel.sender.subscribe();
        Subscription {
            id,
            receiver: Some(receiver),
            watchers: Arc::clone(self),
            counted,
        }
    }
}

/// One watcher's receiver of a saga's commits.
#[derive(Debug)]
pub(crate) struct Subscription {
    id: SagaId,
    /// Always `Some` until dropped.
    receiver: Option<broadcast::Receiver<Arc<Saga>>>,
    watchers: Arc<Watchers>,
    /// Whether it counts against the watch limit (a `WatchSaga` following every revision).
    counted: bool,
}

impl Subscription {
    fn receiver(&mut self) -> &mut broadcast::Receiver<Arc<Saga>> {
        self.receiver
            .as_mut()
            .unwrap_or_else(|| unreachable!("the receiver is only taken on drop"))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.receiver.take());
        if self.counted {
            self.watchers.open.fetch_sub(1, Ordering::Relaxed);
        }
        let mut channels = self.watchers.lock();
        if let Some(channel) = channels.get_mut(&self.id) {
            channel.followers -= usize::from(self.counted);
            if channel.sender.receiver_count() == 0 {
                channels.remove(&self.id);
            }
        }
    }
}

/// A saga's changes as they are committed; see [`crate::Engine::watch`].
#[derive(Debug)]
pub struct SagaWatch {
    subscription: Subscription,
    first: Option<Saga>,
    last_revision: i64,
    done: bool,
}

impl SagaWatch {
    /// A watch that first returns `saga` (read after `subscription` began), then its later revisions.
    pub(crate) fn new(subscription: Subscription, saga: Saga) -> Self {
        Self {
            subscription,
            first: Some(saga),
            last_revision: -1,
            done: false,
        }
    }

    /// The next version of the saga; `None` once a terminal one was returned.
    pub async fn next(&mut self) -> Option<Saga> {
        if let Some(saga) = self.first.take() {
            return Some(self.emit(saga));
        }
        while !self.done {
            match self.subscription.receiver().recv().await {
                Ok(saga) if saga.revision > self.last_revision => {
                    return Some(self.emit((*saga).clone()));
                }
                // Already seen, or fell behind: the channel still holds the newest revisions.
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                // Only when the channel is replaced, which a live subscription prevents.
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
        None
    }

    fn emit(&mut self, saga: Saga) -> Saga {
        self.last_revision = saga.revision;
        self.done = saga.status.is_terminal();
        saga
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use chrono::Utc;
    use saga_core::{Definition, JsonMap};

    use super::*;

    fn saga() -> Saga {
        let participants: HashSet<String> = ["p".to_owned()].into();
        let definition = Definition::from_yaml(
            "name: t\nversion: 1\nsteps: [{name: A, participant: p, action: Do}]",
            &participants,
        )
        .expect("valid");
        Saga::new(Arc::new(definition), JsonMap::new(), None, Utc::now())
    }

    #[tokio::test]
    async fn watchers_receive_each_revision_once_and_the_last_one_out_removes_the_channel() {
        let watchers = Arc::new(Watchers::new(10));
        let mut saga = saga();
        watchers.publish(&saga); // nobody watches: nothing kept
        assert!(watchers.watched().is_empty());

        let mut first = watchers.subscribe(saga.id).expect("under the limit");
        let second = watchers.subscribe(saga.id).expect("under the limit");
        saga.revision = 1;
        watchers.publish(&saga);
        watchers.publish(&saga); // the refresher and the executor may both hand over revision 1
        assert_eq!(watchers.watched(), [(saga.id, 1)]);
        assert_eq!(first.receiver().recv().await.expect("commit").revision, 1);
        assert!(first.receiver().try_recv().is_err(), "published once");
        drop(second);
        assert_eq!(watchers.watched().len(), 1);
        drop(first);
        assert!(watchers.watched().is_empty());
    }

    #[tokio::test]
    async fn a_waiter_alone_is_handed_only_the_terminal_revision() {
        let watchers = Arc::new(Watchers::new(10));
        let mut saga = saga();
        let mut waiter = watchers.subscribe_waiter(saga.id);
        saga.revision = 1;
        watchers.publish(&saga);
        assert!(waiter.receiver().try_recv().is_err(), "running: not sent");
        saga.revision = 2;
        saga.status = saga_core::SagaStatus::Completed;
        watchers.publish(&saga);
        assert_eq!(
            waiter.receiver().recv().await.expect("terminal").revision,
            2
        );

        // With a follower too, every revision goes out.
        let mut saga = self::saga();
        let _waiter = watchers.subscribe_waiter(saga.id);
        let mut follower = watchers.subscribe(saga.id).expect("under the limit");
        saga.revision = 1;
        watchers.publish(&saga);
        assert_eq!(
            follower.receiver().recv().await.expect("revision").revision,
            1
        );
    }

    #[test]
    fn watches_beyond_the_limit_are_refused_until_one_closes() {
        let watchers = Arc::new(Watchers::new(2));
        let id = saga().id;
        let a = watchers.subscribe(id).expect("first");
        let _b = watchers.subscribe(SagaId::new()).expect("second");
        assert!(matches!(
            watchers.subscribe(id),
            Err(EngineError::TooManyWatches { limit: 2 })
        ));
        drop(a);
        assert!(watchers.subscribe(id).is_ok(), "a slot freed up");
    }
}

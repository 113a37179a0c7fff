//! `WatchSaga` support: executors publish every committed saga, watchers of that saga receive it.
//!
//! Channels exist only while someone watches: a saga nobody watches costs one map lookup per commit.
//! Changes made by another replica never pass through this instance, so a watch also re-reads the saga
//! log now and then (see [`crate::Engine::watch`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use saga_core::{Saga, SagaId};
use tokio::sync::broadcast;

/// Commits a slow watcher may fall behind by before it re-reads the saga log instead.
const CHANNEL_CAPACITY: usize = 64;

/// The watched sagas and their channels.
#[derive(Debug, Default)]
pub(crate) struct Watchers {
    channels: Mutex<HashMap<SagaId, broadcast::Sender<Arc<Saga>>>>,
}

impl Watchers {
    /// Hands a committed saga to its watchers, if any.
    pub(crate) fn publish(&self, saga: &Saga) {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = channels.get(&saga.id)
            && sender.send(Arc::new(saga.clone())).is_err()
        {
            channels.remove(&saga.id);
        }
    }

    /// Subscribes to the commits of saga `id`; the subscription ends its channel when dropped last.
    pub(crate) fn subscribe(self: &Arc<Self>, id: SagaId) -> Subscription {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        let receiver = channels
            .entry(id)
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe();
        Subscription {
            id,
            receiver: Some(receiver),
            watchers: Arc::clone(self),
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
}

impl Subscription {
    pub(crate) fn receiver(&mut self) -> &mut broadcast::Receiver<Arc<Saga>> {
        self.receiver
            .as_mut()
            .unwrap_or_else(|| unreachable!("the receiver is only taken on drop"))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.receiver.take());
        let mut channels = self
            .watchers
            .channels
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if channels
            .get(&self.id)
            .is_some_and(|sender| sender.receiver_count() == 0)
        {
            channels.remove(&self.id);
        }
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
    async fn watchers_receive_commits_and_the_last_one_out_removes_the_channel() {
        let watchers = Arc::new(Watchers::default());
        let saga = saga();
        watchers.publish(&saga); // nobody watches: nothing kept
        assert!(watchers.channels.lock().expect("lock").is_empty());

        let mut first = watchers.subscribe(saga.id);
        let second = watchers.subscribe(saga.id);
        watchers.publish(&saga);
        assert_eq!(first.receiver().recv().await.expect("commit").id, saga.id);
        drop(second);
        assert_eq!(watchers.channels.lock().expect("lock").len(), 1);
        drop(first);
        assert!(watchers.channels.lock().expect("lock").is_empty());
    }
}

//! Open `WatchSaga` streams per principal (`limits.max_watches_per_principal`), so one caller cannot
//! hold every stream an instance can serve. A stream holds a [`WatchTicket`] until it ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::status::over_limit;
use tonic::Status;

/// Counts open watches per principal.
#[derive(Debug)]
pub(crate) struct WatchQuota {
    limit: usize,
    open: Mutex<HashMap<String, usize>>,
}

/// One open watch; dropping it gives the slot back.
#[derive(Debug)]
pub(crate) struct WatchTicket {
    quota: Arc<WatchQuota>,
    holder: String,
}

impl WatchQuota {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            open: Mutex::default(),
        })
    }

    /// A slot for `holder` (a principal name, or a client address when sagad runs open), or
    /// `RESOURCE_EXHAUSTED` when it already holds the limit.
    pub(crate) fn take(self: &Arc<Self>, holder: String) -> Result<WatchTicket, Status> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(holder.clone()).or_default();
        if *count >= self.limit {
            return Err(over_limit(format!(
                "{holder} already has {} open WatchSaga streams (limits.max_watches_per_principal); \
                 close one first",
                self.limit
            )));
        }
        *count += 1;
        Ok(WatchTicket {
            quota: Arc::clone(self),
            holder,
        })
    }
}

impl Drop for WatchTicket {
    fn drop(&mut self) {
        let mut open = self
            .quota
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.holder) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.holder);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_holder_has_its_own_limit_and_closing_frees_a_slot() {
        let quota = WatchQuota::new(2);
        let a1 = quota.take("a".into()).expect("first");
        let _a2 = quota.take("a".into()).expect("second");
        let refused = quota.take("a".into()).expect_err("third");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        let _b = quota.take("b".into()).expect("another holder");
        drop(a1);
        let _a3 = quota.take("a".into()).expect("a slot was freed");
    }
}

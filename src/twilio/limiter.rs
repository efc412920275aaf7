//! At most N Twilio requests in flight per account, across every rotation and every client of
//! the operator. Twilio refuses requests beyond an account's concurrency limit with 429/20429,
//! and that limit is shared with the account's own applications: a thousand rotations due at
//! once must not take it all, nor turn into a storm of retried 429s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Shared by cloning; one per operator.
#[derive(Clone, Default)]
pub struct AccountLimiter {
    /// Requests in flight per account; 0: no limit.
    per_account: usize,
    slots: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

impl std::fmt::Debug for AccountLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountLimiter")
            .field("per_account", &self.per_account)
            .finish_non_exhaustive()
    }
}

impl AccountLimiter {
    /// At most `per_account` requests at once per account (0: no limit).
    pub fn new(per_account: usize) -> Self {
        Self {
            per_account,
            slots: Arc::default(),
        }
    }

    pub fn per_account(&self) -> usize {
        self.per_account
    }

    /// Waits for a place for one request on `account`; the place frees when the permit drops.
    /// `None` when there is no limit.
    pub async fn acquire(&self, account: &str) -> Option<OwnedSemaphorePermit> {
        if self.per_account == 0 {
            return None;
        }
        let semaphore = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            // Forget accounts with nobody in flight or waiting, so the map stays as small as
            // the set of accounts in use.
            if slots.len() > 64 {
                let full = self.per_account;
                slots.retain(|_, s| Arc::strong_count(s) > 1 || s.available_permits() < full);
            }
            slots
                .entry(account.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_account)))
                .clone()
        };
        // The semaphore is never closed.
        semaphore.acquire_owned().await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn at_most_n_per_account_and_accounts_are_independent() {
        let limiter = AccountLimiter::new(2);
        let now = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (limiter, now, peak) = (limiter.clone(), now.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = limiter.acquire("AC1").await;
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                now.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        // Another account is not held up by the first one's queue.
        let _a = limiter.acquire("AC2").await;
        let _b = limiter.acquire("AC2").await;
        // Were AC2 one queue with AC1, its two places held here would stall these forever.
        let all = futures::future::join_all(tasks);
        tokio::time::timeout(Duration::from_secs(10), all)
            .await
            .expect("AC1's requests ran while AC2 held both of its places");
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        assert!(AccountLimiter::new(0).acquire("AC1").await.is_none());
    }
}

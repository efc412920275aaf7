//! A hook that sees every finished call, for metrics ("calls by endpoint and outcome").

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use super::endpoint::Endpoint;
use super::error::ErrorKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CallOutcome {
    Success,
    Failure(ErrorKind),
}

impl CallOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Success => "success",
            CallOutcome::Failure(kind) => kind.as_str(),
        }
    }
}

/// One finished call: all its attempts, including retries. A listing reports one record per
/// page it fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub endpoint: Endpoint,
    pub outcome: CallOutcome,
    /// Attempts made (1 without retries).
    pub attempts: u32,
    /// HTTP status of the last response, if any.
    pub status: Option<u16>,
    /// Wall time of the whole call, backoff included.
    pub duration: Duration,
}

/// Receives a [`CallRecord`] after every call. Must be cheap and must not block.
pub trait CallObserver: Send + Sync {
    fn on_call(&self, record: &CallRecord);
}

impl<F> CallObserver for F
where
    F: Fn(&CallRecord) + Send + Sync,
{
    fn on_call(&self, record: &CallRecord) {
        self(record)
    }
}

/// A ready-made observer counting calls by endpoint and outcome.
#[derive(Debug, Default)]
pub struct CallCounter {
    counts: Mutex<BTreeMap<(Endpoint, CallOutcome), u64>>,
}

impl CallCounter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, endpoint: Endpoint, outcome: CallOutcome) -> u64 {
        self.lock().get(&(endpoint, outcome)).copied().unwrap_or(0)
    }

    pub fn snapshot(&self) -> BTreeMap<(Endpoint, CallOutcome), u64> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(Endpoint, CallOutcome), u64>> {
        // A panic elsewhere while holding the lock leaves plain counters, still usable.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl CallObserver for CallCounter {
    fn on_call(&self, record: &CallRecord) {
        *self
            .lock()
            .entry((record.endpoint, record.outcome))
            .or_insert(0) += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_counts_by_endpoint_and_outcome() {
        let c = CallCounter::new();
        let rec = |endpoint, outcome| CallRecord {
            endpoint,
            outcome,
            attempts: 1,
            status: Some(200),
            duration: Duration::ZERO,
        };
        c.on_call(&rec(Endpoint::FetchAccount, CallOutcome::Success));
        c.on_call(&rec(Endpoint::FetchAccount, CallOutcome::Success));
        c.on_call(&rec(
            Endpoint::FetchAccount,
            CallOutcome::Failure(ErrorKind::AuthenticationFailed),
        ));
        assert_eq!(c.get(Endpoint::FetchAccount, CallOutcome::Success), 2);
        assert_eq!(
            c.get(
                Endpoint::FetchAccount,
                CallOutcome::Failure(ErrorKind::AuthenticationFailed)
            ),
            1
        );
        assert_eq!(c.get(Endpoint::ListApiKeys, CallOutcome::Success), 0);
        assert_eq!(c.snapshot().len(), 2);
    }
}

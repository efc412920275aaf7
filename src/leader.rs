//! Leader election on a coordination.k8s.io Lease (kube-lease-manager): only the holder runs the
//! controller. A replica that loses the lease stops acting at once and exits, so the orchestrator
//! restarts it as a standby; a standby takes over when the holder releases the lease (graceful
//! shutdown) or lets it expire (crash).

use crate::metrics::Metrics;
use chrono::{DateTime, TimeZone, Utc};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// Unique per replica (the pod name).
    pub identity: String,
    /// How long a lease outlives its last renewal; at least 2 s.
    pub duration_seconds: u64,
}

impl LeaseConfig {
    /// Renew this long before expiry: two thirds of the lease, so the holder renews every
    /// third of it and one failed renewal is not yet a lost lease.
    fn grace_seconds(&self) -> u64 {
        (self.duration_seconds * 2 / 3).clamp(1, self.duration_seconds.saturating_sub(1).max(1))
    }

    /// A leader whose last renewal is older than this stops acting: two thirds of the lease
    /// (client-go's 10 s of 15 s), so it has stopped before the lease expires and a standby
    /// may take it.
    pub fn renew_deadline(&self) -> Duration {
        Duration::from_millis(self.duration_seconds * 2000 / 3)
    }
}

/// Whether a leader last renewed at `last_renewal` must stop acting at `now`.
fn past_deadline(last_renewal: DateTime<Utc>, now: DateTime<Utc>, deadline: Duration) -> bool {
    now - last_renewal > chrono::Duration::from_std(deadline).unwrap_or(chrono::Duration::MAX)
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError<E: std::error::Error + 'static> {
    #[error("lease duration must be at least 2 seconds, got {0}")]
    InvalidDuration(u64),
    #[error("leader election on Lease {namespace}/{name}: {source}")]
    Lease {
        namespace: String,
        name: String,
        source: LeaseManagerError,
    },
    #[error("the leader election loop ended unexpectedly")]
    LoopEnded,
    #[error("lost the leader lease; stopped acting so that another replica can take over")]
    Lost,
    #[error("could not renew the leader lease within {0:?}; stopped acting before it expires so that another replica can take over")]
    RenewDeadline(Duration),
    #[error(transparent)]
    Work(E),
}

/// Waits for the lease, then runs `work` while holding it. Returns when `shutdown` resolves
/// (releasing the lease for a fast hand-over), when `work` ends, or with [`LeaderError::Lost`].
pub async fn run_as_leader<E, W>(
    client: kube::Client,
    cfg: LeaseConfig,
    metrics: Metrics,
    shutdown: impl Future<Output = ()>,
    work: impl FnOnce() -> W,
) -> Result<(), LeaderError<E>>
where
    E: std::error::Error + 'static,
    W: Future<Output = Result<(), E>>,
{
    if cfg.duration_seconds < 2 {
        return Err(LeaderError::InvalidDuration(cfg.duration_seconds));
    }
    let lease_err = |source| LeaderError::Lease {
        namespace: cfg.namespace.clone(),
        name: cfg.name.clone(),
        source,
    };
    let manager = LeaseManagerBuilder::new(client.clone(), cfg.name.clone())
        .with_namespace(cfg.namespace.clone())
        .with_identity(cfg.identity.clone())
        .with_duration(cfg.duration_seconds)
        .with_grace(cfg.grace_seconds())
        .build()
        .await
        .map_err(lease_err)?;
    let (mut leading, task) = manager.watch().await;
    tokio::pin!(shutdown);

    tracing::info!(lease = %cfg.name, identity = %cfg.identity, "waiting for the leader lease");
    loop {
        if *leading.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = leading.changed() => changed.map_err(|_| LeaderError::LoopEnded)?,
            () = &mut shutdown => return Ok(()),
        }
    }
    tracing::info!(lease = %cfg.name, identity = %cfg.identity, "acquired the leader lease; starting the controller");
    metrics.set_leader(true);
    let result = tokio::select! {
        r = work() => r.map_err(LeaderError::Work),
        () = lost(&mut leading) => Err(LeaderError::Lost),
        e = renewals_stop(&client, &cfg) => Err(e),
        () = &mut shutdown => Ok(()),
    };
    metrics.set_leader(false);
    // Closing the channel makes the lease task release the lease (if still ours) and end.
    drop(leading);
    match tokio::time::timeout(Duration::from_secs(5), task).await {
        Ok(Ok(Ok(_))) => tracing::info!(lease = %cfg.name, "released the leader lease"),
        Ok(Ok(Err(e))) => {
            tracing::warn!(error = %e, "releasing the leader lease failed; it expires on its own")
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "the lease task failed"),
        Err(_) => tracing::warn!("releasing the leader lease timed out; it expires on its own"),
    }
    result
}

/// Resolves once this replica's lease is no longer renewed: another holder, or no renewal
/// seen within the renew deadline (the API server unreachable, renewals refused). The lease
/// manager itself keeps reporting "leader" while it cannot reach the API server, which would
/// leave this replica acting after the lease expired and a standby took over.
async fn renewals_stop<E: std::error::Error + 'static>(
    client: &kube::Client,
    cfg: &LeaseConfig,
) -> LeaderError<E> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let deadline = cfg.renew_deadline();
    let period = (deadline / 4).min(Duration::from_secs(1));
    let mut last_renewal = Utc::now();
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        if let Ok(Ok(read)) = tokio::time::timeout(period, api.get_opt(&cfg.name)).await {
            let spec = read.and_then(|l| l.spec).unwrap_or_default();
            if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
                return LeaderError::Lost;
            }
            if let Some(t) = spec.renew_time {
                let renewed = Utc
                    .timestamp_millis_opt(t.0.as_millisecond())
                    .single()
                    .unwrap_or(last_renewal);
                last_renewal = last_renewal.max(renewed);
            }
        }
        if past_deadline(last_renewal, Utc::now(), deadline) {
            tracing::warn!(lease = %cfg.name, ?deadline, "no renewal of the leader lease within the renew deadline; stopping");
            return LeaderError::RenewDeadline(deadline);
        }
    }
}

/// Resolves once this replica no longer holds the lease (or the lease loop died).
async fn lost(leading: &mut watch::Receiver<bool>) {
    loop {
        if leading.changed().await.is_err() || !*leading.borrow_and_update() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(d: u64) -> LeaseConfig {
        LeaseConfig {
            name: "l".into(),
            namespace: "n".into(),
            identity: "i".into(),
            duration_seconds: d,
        }
    }

    /// Renewals come every third of the lease; the renew deadline falls after one missed
    /// renewal and before the lease expires (client-go: 15 s lease, 10 s deadline).
    #[test]
    fn renewals_and_deadline_fit_inside_the_lease() {
        assert_eq!(cfg(15).grace_seconds(), 10);
        assert_eq!(cfg(15).renew_deadline(), Duration::from_secs(10));
        assert_eq!(cfg(2).grace_seconds(), 1);
        for d in 2..100 {
            let c = cfg(d);
            let g = c.grace_seconds();
            assert!(g >= 1 && g < d, "duration {d} grace {g}");
            let every = Duration::from_secs(d - g);
            let deadline = c.renew_deadline();
            let lease = Duration::from_secs(d);
            assert!(deadline < lease, "duration {d}: stops before expiry");
            assert!(
                deadline >= every,
                "duration {d}: one renewal fits the deadline"
            );
        }
    }

    #[test]
    fn past_the_deadline_only_after_it() {
        let t = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
        let d = Duration::from_secs(10);
        assert!(!past_deadline(t, t + chrono::Duration::seconds(10), d));
        assert!(past_deadline(
            t,
            t + chrono::Duration::milliseconds(10_001),
            d
        ));
    }
}

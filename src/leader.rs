//! Leader election on a coordination.k8s.io Lease (kube-lease-manager): only the holder runs the
//! controller. A replica that loses the lease stops acting at once and exits, so the orchestrator
//! restarts it as a standby; a standby takes over when the holder releases the lease (graceful
//! shutdown) or lets it expire (crash).

use crate::metrics::Metrics;
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
    /// Renew this long before expiry: a third of the lease, so two renewals can fail in a row.
    fn grace_seconds(&self) -> u64 {
        (self.duration_seconds / 3).clamp(1, self.duration_seconds.saturating_sub(1).max(1))
    }
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
    let manager = LeaseManagerBuilder::new(client, cfg.name.clone())
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

    #[test]
    fn grace_is_a_third_and_always_below_the_duration() {
        let cfg = |d| LeaseConfig {
            name: "l".into(),
            namespace: "n".into(),
            identity: "i".into(),
            duration_seconds: d,
        };
        assert_eq!(cfg(15).grace_seconds(), 5);
        assert_eq!(cfg(2).grace_seconds(), 1);
        assert_eq!(cfg(4).grace_seconds(), 1);
        for d in 2..100 {
            let g = cfg(d).grace_seconds();
            assert!(g >= 1 && g < d, "duration {d} grace {g}");
        }
    }
}

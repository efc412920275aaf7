//! Types shared by the pure controller logic: what a controller sees of a pod, and what it asks for.

use chrono::{DateTime, Utc};

/// A controller's view of one pod at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSummary {
    pub name: String,
    pub revision: String,
    pub ordinal: Option<u32>,
    pub node: String,
    pub created_at: DateTime<Utc>,
    pub ready: bool,
    /// Ready for at least `minReadySeconds`.
    pub available: bool,
}

/// What a controller decides to do in one sync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Create {
        revision: String,
        ordinal: Option<u32>,
        node: Option<String>,
    },
    Delete {
        pod: String,
    },
}

impl Action {
    pub fn create(revision: &str) -> Self {
        Action::Create {
            revision: revision.to_owned(),
            ordinal: None,
            node: None,
        }
    }

    pub fn delete(pod: &PodSummary) -> Self {
        Action::Delete {
            pod: pod.name.clone(),
        }
    }
}

/// Orders pods the way the ReplicaSet controller picks victims: not ready first, then not
/// available, then the newest.
pub fn deletion_order(pods: &mut [&PodSummary]) {
    pods.sort_by(|a, b| {
        a.ready
            .cmp(&b.ready)
            .then(a.available.cmp(&b.available))
            .then(b.created_at.cmp(&a.created_at))
            .then(a.name.cmp(&b.name))
    });
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use chrono::TimeZone;

    pub fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
    }

    pub fn pod(name: &str, revision: &str, ready: bool) -> PodSummary {
        PodSummary {
            name: name.to_owned(),
            revision: revision.to_owned(),
            ordinal: None,
            node: "sim-node-0".to_owned(),
            created_at: t(0),
            ready,
            available: ready,
        }
    }

    pub fn pods(revision: &str, ready: usize, not_ready: usize) -> Vec<PodSummary> {
        (0..ready + not_ready)
            .map(|i| pod(&format!("{revision}-{i}"), revision, i < ready))
            .collect()
    }

    /// Applies actions the way the simulator does: deletions vanish, creations start not ready.
    pub fn apply(pods: &mut Vec<PodSummary>, actions: &[Action], now: DateTime<Utc>) {
        for (i, a) in actions.iter().enumerate() {
            match a {
                Action::Delete { pod } => {
                    let before = pods.len();
                    pods.retain(|p| &p.name != pod);
                    assert_eq!(before, pods.len() + 1, "deleted unknown pod {pod}");
                }
                Action::Create {
                    revision,
                    ordinal,
                    node,
                } => pods.push(PodSummary {
                    name: match ordinal {
                        Some(o) => format!("sts-{o}"),
                        None => format!("{revision}-new-{}-{i}", now.timestamp()),
                    },
                    revision: revision.clone(),
                    ordinal: *ordinal,
                    node: node.clone().unwrap_or_else(|| "sim-node-0".to_owned()),
                    created_at: now,
                    ready: false,
                    available: false,
                }),
            }
        }
    }

    /// Marks every pod ready and available.
    pub fn make_all_ready(pods: &mut [PodSummary]) {
        for p in pods {
            p.ready = true;
            p.available = true;
        }
    }
}

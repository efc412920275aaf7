//! The kubelet side of a simulated pod: start (env snapshot, mounts), readiness, and the periodic
//! resync of mounted Secret/ConfigMap volumes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};

use super::plan::PodSummary;
use super::resolve::{
    container_env, mounts_of, volume_files, Data, MountSpec, PodIdentity, Sources, StartError,
};
use super::types::{PodPhase, SimPod, WorkloadRef};

/// Pod IPs, unique within the process.
fn next_ip() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(2);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("10.244.{}.{}", (n / 250) % 250, n % 250 + 2)
}

/// A simulated pod plus what the simulator needs to keep running it.
#[derive(Clone, Debug)]
pub struct PodRecord {
    pub pod: SimPod,
    pub template: Arc<PodTemplateSpec>,
    /// Set when the pod was created while the workload's `fail_new_pods` knob was on.
    pub fails_readiness: bool,
    uid: String,
    /// Mount path -> when a difference to the live source was first seen.
    pending_sync: BTreeMap<String, DateTime<Utc>>,
    /// While Terminating: when the grace period ends and the pod is gone.
    pub gone_at: Option<DateTime<Utc>>,
    /// Pod IP (10.244.x.y).
    pub ip: String,
    /// The Events written about it so far ([`PodEvent`] bits).
    pub events_sent: u8,
}

/// Events the scheduler and the kubelet write about a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodEvent {
    Scheduled = 1,
    Started = 2,
    Killing = 4,
}

/// Per-pod inputs of [`PodRecord::advance`].
#[derive(Clone, Copy, Debug)]
pub struct Kubelet<'a> {
    pub sources: &'a Sources,
    pub readiness_delay: Duration,
    pub sync_delay: Duration,
    pub now: DateTime<Utc>,
}

impl PodRecord {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        workload: WorkloadRef,
        revision: String,
        ordinal: Option<u32>,
        node: String,
        template: Arc<PodTemplateSpec>,
        fails_readiness: bool,
        now: DateTime<Utc>,
    ) -> Self {
        let uid = uuid::Uuid::new_v4().to_string();
        Self {
            pod: SimPod {
                name,
                uid: uid.clone(),
                workload,
                revision,
                ordinal,
                node,
                phase: PodPhase::Pending,
                ready: false,
                created_at: now,
                started_at: None,
                ready_at: None,
                waiting_reason: None,
                waiting_message: None,
                env: BTreeMap::new(),
                container_env: BTreeMap::new(),
                mounted: BTreeMap::new(),
                terminating_since: None,
            },
            template,
            fails_readiness,
            uid,
            pending_sync: BTreeMap::new(),
            gone_at: None,
            ip: next_ip(),
            events_sent: 0,
        }
    }

    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// The Events due now that were not written yet; marks them written.
    pub fn due_events(&mut self) -> Vec<PodEvent> {
        let mut due = vec![PodEvent::Scheduled];
        if self.pod.started_at.is_some() {
            due.push(PodEvent::Started);
        }
        if self.terminating() {
            due.push(PodEvent::Killing);
        }
        due.retain(|e| self.events_sent & (*e as u8) == 0);
        for e in &due {
            self.events_sent |= *e as u8;
        }
        due
    }

    /// Whether its deletion has begun.
    pub fn terminating(&self) -> bool {
        self.pod.terminating_since.is_some()
    }

    /// Begins a graceful deletion: not ready any more, gone after `grace`.
    pub fn begin_termination(&mut self, now: DateTime<Utc>, grace: Duration) {
        if self.terminating() {
            return;
        }
        self.pod.terminating_since = Some(now);
        self.pod.ready = false;
        self.gone_at =
            Some(now + chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX));
    }

    /// A Job's pod that has worked for `run_for` since it got ready is done.
    pub fn finish_if_done(&mut self, run_for: Duration, now: DateTime<Utc>) {
        if let (PodPhase::Running, Some(at), false) =
            (self.pod.phase, self.pod.ready_at, self.terminating())
        {
            if now >= at + chrono::Duration::from_std(run_for).unwrap_or(chrono::Duration::MAX) {
                self.pod.phase = PodPhase::Succeeded;
                self.pod.ready = false;
            }
        }
    }

    /// The template's `terminationGracePeriodSeconds` (30 when unset).
    pub fn grace_period_seconds(&self) -> i64 {
        self.spec()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30)
    }

    fn spec(&self) -> Option<&PodSpec> {
        self.template.spec.as_ref()
    }

    fn identity(&self) -> PodIdentity {
        let meta = self.template.metadata.as_ref();
        PodIdentity {
            name: self.pod.name.clone(),
            namespace: self.pod.workload.namespace.clone(),
            uid: self.uid.clone(),
            node: self.pod.node.clone(),
            labels: meta.and_then(|m| m.labels.clone()).unwrap_or_default(),
            annotations: meta.and_then(|m| m.annotations.clone()).unwrap_or_default(),
            service_account: self
                .spec()
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_else(|| "default".to_owned()),
        }
    }

    /// One kubelet pass: start the containers if possible, flip readiness when due, and resync
    /// mounted volumes whose source changed at least `sync_delay` ago.
    pub fn advance(&mut self, k: Kubelet<'_>) {
        if self.terminating() || self.pod.phase == PodPhase::Succeeded {
            // Draining: the containers run on with what they read; nothing new starts.
            return;
        }
        if self.pod.phase == PodPhase::Pending {
            match self.start(k.sources) {
                Ok(()) => {
                    self.pod.phase = PodPhase::Running;
                    self.pod.started_at = Some(k.now);
                    self.pod.waiting_reason = None;
                    self.pod.waiting_message = None;
                }
                Err(e) => {
                    self.pod.waiting_reason = Some(e.reason().to_owned());
                    self.pod.waiting_message = Some(e.message().to_owned());
                    return;
                }
            }
        }
        if !self.pod.ready && !self.fails_readiness {
            if let Some(started) = self.pod.started_at {
                let due = started
                    + chrono::Duration::from_std(k.readiness_delay)
                        .unwrap_or(chrono::Duration::MAX);
                if k.now >= due {
                    self.pod.ready = true;
                    self.pod.ready_at = Some(k.now);
                }
            }
        }
        self.sync_mounts(k);
    }

    fn start(&mut self, src: &Sources) -> Result<(), StartError> {
        let Some(spec) = self.spec().cloned() else {
            return Ok(());
        };
        let ns = self.pod.workload.namespace.clone();
        let mut mounted = BTreeMap::new();
        for m in mounts_of(&spec) {
            if let Some(files) = self
                .mount_files(&spec, &m, &ns, src)
                .map_err(StartError::Mount)?
            {
                mounted.insert(m.path.clone(), files);
            }
        }
        let identity = self.identity();
        let mut per_container = BTreeMap::new();
        for c in &spec.containers {
            let env = container_env(c, &identity, src).map_err(StartError::Config)?;
            per_container.insert(c.name.clone(), env);
        }
        let mut merged = Data::new();
        for c in spec.containers.iter().rev() {
            if let Some(env) = per_container.get(&c.name) {
                merged.extend(env.clone());
            }
        }
        self.pod.mounted = mounted;
        self.pod.container_env = per_container;
        self.pod.env = merged;
        Ok(())
    }

    /// Files a mount shows now, `None` when the volume is not Secret/ConfigMap-backed.
    fn mount_files(
        &self,
        spec: &PodSpec,
        m: &MountSpec,
        ns: &str,
        src: &Sources,
    ) -> Result<Option<Data>, String> {
        let Some(volume) = spec.volumes.iter().flatten().find(|v| v.name == m.volume) else {
            return Ok(None);
        };
        let Some(files) = volume_files(volume, ns, src)? else {
            return Ok(None);
        };
        Ok(Some(match &m.sub_path {
            Some(sub) => files
                .get(sub)
                .map(|v| Data::from([(sub.clone(), v.clone())]))
                .unwrap_or_default(),
            None => files,
        }))
    }

    fn sync_mounts(&mut self, k: Kubelet<'_>) {
        let Some(spec) = self.spec().cloned() else {
            return;
        };
        let ns = self.pod.workload.namespace.clone();
        let delay = chrono::Duration::from_std(k.sync_delay).unwrap_or(chrono::Duration::MAX);
        for m in mounts_of(&spec) {
            // subPath mounts never receive updates, as with the real kubelet.
            if m.sub_path.is_some() {
                continue;
            }
            // A source that disappeared leaves the last content in place.
            let Ok(Some(live)) = self.mount_files(&spec, &m, &ns, k.sources) else {
                self.pending_sync.remove(&m.path);
                continue;
            };
            if self.pod.mounted.get(&m.path) == Some(&live) {
                self.pending_sync.remove(&m.path);
                continue;
            }
            let since = *self.pending_sync.entry(m.path.clone()).or_insert(k.now);
            if k.now - since >= delay {
                self.pod.mounted.insert(m.path.clone(), live);
                self.pending_sync.remove(&m.path);
            }
        }
    }

    pub fn is_available(&self, min_ready_seconds: i32, now: DateTime<Utc>) -> bool {
        match (self.pod.ready, self.pod.ready_at) {
            (true, Some(at)) => {
                min_ready_seconds <= 0
                    || at + chrono::Duration::seconds(i64::from(min_ready_seconds)) < now
            }
            _ => false,
        }
    }

    pub fn summary(&self, min_ready_seconds: i32, now: DateTime<Utc>) -> PodSummary {
        PodSummary {
            name: self.pod.name.clone(),
            revision: self.pod.revision.clone(),
            ordinal: self.pod.ordinal,
            node: self.pod.node.clone(),
            created_at: self.pod.created_at,
            ready: self.pod.ready,
            available: self.is_available(min_ready_seconds, now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::plan::test_support::t;
    use crate::workloads::types::WorkloadKind;
    use k8s_openapi::api::core::v1::{
        Container, EnvVar, EnvVarSource, SecretKeySelector, SecretVolumeSource, Volume, VolumeMount,
    };

    fn template() -> Arc<PodTemplateSpec> {
        Arc::new(PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    env: Some(vec![EnvVar {
                        name: "TOKEN".into(),
                        value_from: Some(EnvVarSource {
                            secret_key_ref: Some(SecretKeySelector {
                                name: "tw".into(),
                                key: "token".into(),
                                optional: None,
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]),
                    volume_mounts: Some(vec![
                        VolumeMount {
                            name: "creds".into(),
                            mount_path: "/etc/tw".into(),
                            ..Default::default()
                        },
                        VolumeMount {
                            name: "creds".into(),
                            mount_path: "/etc/token".into(),
                            sub_path: Some("token".into()),
                            ..Default::default()
                        },
                    ]),
                    ..Default::default()
                }],
                volumes: Some(vec![Volume {
                    name: "creds".into(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some("tw".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    fn src(token: Option<&str>) -> Sources {
        let mut s = Sources::default();
        if let Some(token) = token {
            s.secrets.insert(
                ("ns".into(), "tw".into()),
                std::sync::Arc::new(Data::from([("token".into(), token.into())])),
            );
        }
        s
    }

    fn record() -> PodRecord {
        PodRecord::new(
            "web-1".into(),
            WorkloadRef::new(WorkloadKind::Deployment, "ns", "web"),
            "h".into(),
            None,
            "sim-node-0".into(),
            template(),
            false,
            t(0),
        )
    }

    fn kubelet(s: &Sources, now: DateTime<Utc>) -> Kubelet<'_> {
        Kubelet {
            sources: s,
            readiness_delay: Duration::from_secs(1),
            sync_delay: Duration::from_secs(2),
            now,
        }
    }

    #[test]
    fn missing_secret_blocks_start_until_it_appears() {
        let mut p = record();
        let none = src(None);
        p.advance(kubelet(&none, t(0)));
        assert_eq!(p.pod.phase, PodPhase::Pending);
        assert_eq!(p.pod.waiting_reason.as_deref(), Some("ContainerCreating"));
        assert!(!p.pod.ready);
        let some = src(Some("a"));
        p.advance(kubelet(&some, t(5)));
        assert_eq!(p.pod.phase, PodPhase::Running);
        assert_eq!(p.pod.started_at, Some(t(5)));
        assert!(!p.pod.ready, "readiness delay not yet over");
        p.advance(kubelet(&some, t(6)));
        assert!(p.pod.ready);
        assert_eq!(p.pod.env["TOKEN"], "a");
    }

    #[test]
    fn env_is_a_snapshot_but_volumes_follow_after_the_sync_delay() {
        let mut p = record();
        p.advance(kubelet(&src(Some("old")), t(0)));
        assert!(p.pod.holds("old"));
        let new = src(Some("new"));
        p.advance(kubelet(&new, t(10)));
        assert_eq!(
            p.pod.mounted["/etc/tw"]["token"], "old",
            "sync delay not over"
        );
        p.advance(kubelet(&new, t(11)));
        assert_eq!(p.pod.mounted["/etc/tw"]["token"], "old");
        p.advance(kubelet(&new, t(12)));
        assert_eq!(p.pod.mounted["/etc/tw"]["token"], "new");
        assert_eq!(p.pod.env["TOKEN"], "old", "env is fixed at start");
        assert_eq!(
            p.pod.mounted["/etc/token"]["token"], "old",
            "subPath mounts never update"
        );
        assert!(p.pod.holds("new") && p.pod.holds("old"));
        // A deleted Secret leaves the files in place.
        p.advance(kubelet(&src(None), t(20)));
        assert_eq!(p.pod.mounted["/etc/tw"]["token"], "new");
    }

    #[test]
    fn failing_pods_never_become_ready_and_availability_waits_min_ready_seconds() {
        let s = src(Some("a"));
        let mut p = record();
        p.fails_readiness = true;
        p.advance(kubelet(&s, t(0)));
        p.advance(kubelet(&s, t(100)));
        assert_eq!(p.pod.phase, PodPhase::Running);
        assert!(!p.pod.ready);

        let mut q = record();
        q.advance(kubelet(&s, t(0)));
        q.advance(kubelet(&s, t(1)));
        assert!(q.pod.ready);
        assert!(q.is_available(0, t(1)));
        assert!(!q.is_available(5, t(6)));
        assert!(q.is_available(5, t(7)));
    }
}

//! The simulated pods and Deployment ReplicaSets as API objects, so that kubectl, the Python
//! client and kube-rs reflectors see what the simulator runs: owner references, labels, the
//! template's spec with `nodeName`, phase, `Ready`/`ContainersReady` conditions, container
//! states and pod IPs. The simulator's own model stays the source of truth; each tick diffs what
//! it wants in the API against what it last wrote and emits the writes ([`Op`]).

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::{json, Map, Value};

use super::pod::PodRecord;
use super::types::{PodPhase, WorkloadKind, WorkloadRef};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjKind {
    ReplicaSet,
    Pod,
}

/// (kind, namespace, name)
pub type Key = (ObjKind, String, String);

/// One object as the simulator wants it: the body to create it with, its status, and (for
/// ReplicaSets) the fields that follow the rollout.
#[derive(Clone, Debug)]
pub struct Desired {
    pub key: Key,
    /// The simulator's id of the workload the object belongs to.
    pub owner: u64,
    /// The simulator's own id of the pod ("" for a ReplicaSet): a new pod with an old name
    /// (a StatefulSet's) is a new object, made once the old one is gone.
    pub sim_uid: String,
    /// A digest of what the object shows: when it equals the last written, body and status
    /// are not even built (`Value::Null`), which keeps a pass over thousands of pods cheap.
    pub fingerprint: u64,
    pub body: Value,
    pub status: Value,
    /// Merge patch of the main resource, re-applied when it changes (ReplicaSet replicas and
    /// revision annotation).
    pub spec: Option<Value>,
}

/// A write to make.
#[derive(Clone, Debug)]
pub enum Op {
    Create {
        key: Key,
        body: Value,
    },
    Status {
        key: Key,
        status: Value,
    },
    Spec {
        key: Key,
        patch: Value,
    },
    /// `grace: None` deletes gracefully (the API marks the pod Terminating), `Some(0)` removes
    /// it (the kubelet's final delete).
    Delete {
        key: Key,
        grace: Option<i64>,
    },
    /// The Deployment's `deployment.kubernetes.io/revision` annotation.
    AnnotateDeployment {
        namespace: String,
        name: String,
        revision: u64,
    },
    /// The scheduler's part for a bare pod: `spec.nodeName`.
    Bind {
        key: Key,
        node: String,
    },
    /// The CronJob controller's writes.
    CreateJob {
        namespace: String,
        body: Value,
    },
    DeleteJob {
        namespace: String,
        name: String,
    },
    CronJobStatus {
        namespace: String,
        name: String,
        status: Value,
    },
    /// A core/v1 Event about a pod.
    Event {
        namespace: String,
        body: Value,
    },
    /// Read a bare pod in full, to run it.
    AdoptPod {
        namespace: String,
        name: String,
        uid: String,
    },
}

#[derive(Clone, Debug, Default)]
struct Entry {
    /// [`Desired::owner`].
    owner: u64,
    uid: Option<String>,
    sim_uid: String,
    /// The object of an earlier pod with this name is being removed first.
    replacing: bool,
    /// Digests of the status and spec patch last written (not the values: thousands of them).
    status: Option<u64>,
    spec: Option<u64>,
    in_flight: bool,
    /// A graceful delete was sent.
    deleting: bool,
    /// The simulator's watch has shown it (so its absence later means someone deleted it).
    seen: bool,
    /// [`Desired::fingerprint`] of the last status written.
    fingerprint: u64,
}

/// What the simulator has written to the API.
#[derive(Debug, Default)]
pub struct MirrorState {
    entries: HashMap<Key, Entry>,
    /// Owners whose entries changed other than by [`plan`](Self::plan) (a write came back,
    /// an object vanished) since [`take_changed`](Self::take_changed).
    changed: HashSet<u64>,
}

fn digest(v: &Value) -> u64 {
    hash_of(serde_json::to_string(v).unwrap_or_default())
}

fn hash_of(v: impl std::hash::Hash) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl MirrorState {
    pub fn uid_of(&self, key: &Key) -> Option<String> {
        self.entries.get(key).and_then(|e| e.uid.clone())
    }

    /// Writes that bring the API to `desired`; `draining` are pods whose graceful deletion
    /// the simulator started; the objects of `kept` owners stay as they are. Objects not
    /// desired any more are deleted.
    pub fn plan(
        &mut self,
        desired: Vec<Desired>,
        draining: &HashSet<Key>,
        kept: &HashSet<u64>,
    ) -> Vec<Op> {
        let mut ops = Vec::new();
        // What is no longer desired, found before the desired are taken apart (a pass over
        // thousands of unchanged objects clones no key).
        let wanted: HashSet<&Key> = desired.iter().map(|d| &d.key).collect();
        let gone: Vec<Key> = self
            .entries
            .iter()
            .filter(|(k, e)| !kept.contains(&e.owner) && !wanted.contains(k) && !e.in_flight)
            .map(|(k, _)| k.clone())
            .collect();
        drop(wanted);
        for d in desired {
            if !self.entries.contains_key(&d.key) {
                self.entries.insert(d.key.clone(), Entry::default());
            }
            let Some(e) = self.entries.get_mut(&d.key) else {
                continue;
            };
            e.owner = d.owner;
            if e.in_flight {
                continue;
            }
            if e.uid.is_some() && e.sim_uid != d.sim_uid {
                e.in_flight = true;
                e.replacing = true;
                ops.push(Op::Delete {
                    key: d.key.clone(),
                    grace: Some(0),
                });
                continue;
            }
            if e.uid.is_none() {
                e.in_flight = true;
                e.sim_uid = d.sim_uid.clone();
                ops.push(Op::Create {
                    key: d.key.clone(),
                    body: d.body,
                });
                continue;
            }
            if draining.contains(&d.key) && !e.deleting {
                e.deleting = true;
                ops.push(Op::Delete {
                    key: d.key.clone(),
                    grace: None,
                });
            }
            if d.status.is_null() {
                // Unchanged since the last write (see `is_current`).
                continue;
            }
            let status_digest = digest(&d.status);
            if e.status != Some(status_digest) {
                e.status = Some(status_digest);
                ops.push(Op::Status {
                    key: d.key.clone(),
                    status: d.status,
                });
            }
            if let Some(spec) = d.spec {
                let spec_digest = digest(&spec);
                if e.spec != Some(spec_digest) {
                    e.spec = Some(spec_digest);
                    ops.push(Op::Spec {
                        key: d.key,
                        patch: spec,
                    });
                }
            }
            // What is written (or being written) now shows this fingerprint.
            e.fingerprint = d.fingerprint;
        }
        for key in gone {
            self.entries.remove(&key);
            let grace = match key.0 {
                ObjKind::Pod => Some(0),
                ObjKind::ReplicaSet => None,
            };
            ops.push(Op::Delete { key, grace });
        }
        // Owners first: a pod's owner reference needs its ReplicaSet's uid.
        ops.sort_by_key(|op| match op {
            Op::Create { key, .. } => (0, key.0),
            _ => (1, ObjKind::Pod),
        });
        ops
    }

    /// Owners whose entries changed since the last call, other than by [`plan`](Self::plan).
    pub fn take_changed(&mut self) -> HashSet<u64> {
        std::mem::take(&mut self.changed)
    }

    /// The entry of `key`, whose owner is marked changed.
    fn change(&mut self, key: &Key) -> Option<&mut Entry> {
        let e = self.entries.get_mut(key)?;
        self.changed.insert(e.owner);
        Some(e)
    }

    /// The create came back with `uid` (None: it failed, try again next tick).
    pub fn created(&mut self, key: &Key, uid: Option<String>) {
        if let Some(e) = self.change(key) {
            e.in_flight = false;
            e.uid = uid;
            e.status = None;
            e.spec = None;
        }
    }

    /// A delete came back: an object replaced by a new pod of the same name may now be made.
    pub fn deleted(&mut self, key: &Key) {
        if let Some(e) = self.change(key).filter(|e| e.replacing) {
            *e = Entry {
                owner: e.owner,
                ..Entry::default()
            };
        }
    }

    /// A pod someone else made (a bare Pod): already in the API with `uid`, run by the
    /// simulator's pod `sim_uid`; only its status is written.
    pub fn adopt(&mut self, key: &Key, uid: &str, sim_uid: &str, owner: u64) {
        self.changed.insert(owner);
        self.entries.insert(
            key.clone(),
            Entry {
                owner,
                uid: Some(uid.to_owned()),
                sim_uid: sim_uid.to_owned(),
                seen: true,
                ..Entry::default()
            },
        );
    }

    /// A delete failed: a replacement tries it again next tick.
    pub fn delete_failed(&mut self, key: &Key) {
        if let Some(e) = self.change(key) {
            e.in_flight = false;
            e.replacing = false;
        }
    }

    /// The API uid of the object written for the simulator's pod `sim_uid`.
    pub fn object_of(&self, key: &Key, sim_uid: &str) -> Option<&str> {
        self.entries
            .get(key)
            .filter(|e| e.sim_uid == sim_uid && !e.replacing)
            .and_then(|e| e.uid.as_deref())
    }

    /// A write failed: send it again next tick.
    pub fn forget_write(&mut self, key: &Key) {
        if let Some(e) = self.change(key) {
            e.status = None;
            e.spec = None;
        }
    }

    /// Whether the object of the simulator's pod `sim_uid` shows `fingerprint` already (so
    /// nothing needs building or writing).
    pub fn is_current(&self, key: &Key, sim_uid: &str, fingerprint: u64) -> bool {
        self.entries.get(key).is_some_and(|e| {
            e.uid.is_some()
                && e.sim_uid == sim_uid
                && !e.in_flight
                && !e.replacing
                && e.status.is_some()
                && e.fingerprint == fingerprint
        })
    }

    /// The watch shows the object with `uid`.
    pub fn mark_seen(&mut self, key: &Key, uid: &str) {
        if let Some(e) = self.entries.get_mut(key) {
            if e.uid.as_deref() == Some(uid) {
                e.seen = true;
            }
        }
    }

    /// The object of the simulator's pod `sim_uid` was shown by the watch before.
    pub fn was_seen(&self, key: &Key, sim_uid: &str) -> bool {
        self.entries
            .get(key)
            .is_some_and(|e| e.seen && e.sim_uid == sim_uid && !e.replacing)
    }

    /// The object is gone from the API (deleted by someone, or garbage-collected).
    pub fn vanished(&mut self, key: &Key) {
        if let Some(e) = self.entries.remove(key) {
            self.changed.insert(e.owner);
        }
    }
}

fn template_labels(t: &PodTemplateSpec) -> BTreeMap<String, String> {
    t.metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
}

fn owner(api_version: &str, kind: &str, name: &str, uid: &str) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "name": name, "uid": uid,
           "controller": true, "blockOwnerDeletion": true})
}

/// The labels a workload's controller adds to its pods (`owner_uid`: the controller's uid).
pub fn pod_labels(rec: &PodRecord, owner_uid: &str) -> BTreeMap<String, String> {
    let mut labels = template_labels(&rec.template);
    let p = &rec.pod;
    match p.workload.kind {
        WorkloadKind::Rollout => {
            labels.insert("rollouts-pod-template-hash".into(), p.revision.clone());
        }
        WorkloadKind::Job => {
            for k in ["batch.kubernetes.io/job-name", "job-name"] {
                labels.insert(k.into(), p.workload.name.clone());
            }
            for k in ["batch.kubernetes.io/controller-uid", "controller-uid"] {
                labels.insert(k.into(), owner_uid.to_owned());
            }
        }
        WorkloadKind::Pod | WorkloadKind::ReplicaSet => {}
        WorkloadKind::Deployment => {
            labels.insert("pod-template-hash".into(), p.revision.clone());
        }
        WorkloadKind::StatefulSet => {
            labels.insert("controller-revision-hash".into(), p.revision.clone());
            labels.insert("statefulset.kubernetes.io/pod-name".into(), p.name.clone());
            if let Some(o) = p.ordinal {
                labels.insert("apps.kubernetes.io/pod-index".into(), o.to_string());
            }
        }
        WorkloadKind::DaemonSet => {
            labels.insert("controller-revision-hash".into(), p.revision.clone());
        }
    }
    labels
}

/// A digest of everything [`pod_object`] shows that can change.
pub fn pod_fingerprint(rec: &PodRecord, owner_uid: &str) -> u64 {
    let p = &rec.pod;
    hash_of((
        p.phase as u8,
        p.ready,
        p.started_at,
        p.ready_at,
        &p.waiting_reason,
        &p.waiting_message,
        p.terminating_since.is_some(),
        &p.node,
        owner_uid,
    ))
}

/// A digest of what a ReplicaSet object shows (see [`Desired::fingerprint`]). The template is
/// named by its hash, and the selector cannot change for one owner uid.
pub fn replica_set_fingerprint(v: &ReplicaSetView<'_>) -> u64 {
    hash_of((
        v.owner_kind,
        v.deployment,
        v.namespace,
        v.deployment_uid,
        v.hash,
        v.revision,
        v.replicas,
        v.ready,
        v.available,
    ))
}

/// A simulated pod as a Pod object, owned by `owner_uid` (its ReplicaSet, StatefulSet or
/// DaemonSet): (body to create, status).
pub fn pod_object(rec: &PodRecord, owner_uid: &str) -> (Value, Value) {
    let p = &rec.pod;
    let r: &WorkloadRef = &p.workload;
    let owner_ref = match r.kind {
        WorkloadKind::Deployment | WorkloadKind::Rollout => owner(
            "apps/v1",
            "ReplicaSet",
            &format!("{}-{}", r.name, p.revision),
            owner_uid,
        ),
        WorkloadKind::StatefulSet => owner("apps/v1", "StatefulSet", &r.name, owner_uid),
        WorkloadKind::DaemonSet => owner("apps/v1", "DaemonSet", &r.name, owner_uid),
        WorkloadKind::Job => owner("batch/v1", "Job", &r.name, owner_uid),
        WorkloadKind::ReplicaSet => owner("apps/v1", "ReplicaSet", &r.name, owner_uid),
        // Made by the user: the mirror only writes its status.
        WorkloadKind::Pod => Value::Null,
    };
    let mut spec = rec
        .template
        .spec
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or_else(|| json!({"containers": []}));
    spec["nodeName"] = json!(p.node);
    if r.kind == WorkloadKind::StatefulSet {
        spec["hostname"] = json!(p.name);
    }
    let mut meta = Map::new();
    meta.insert("name".into(), json!(p.name));
    meta.insert("namespace".into(), json!(r.namespace));
    meta.insert("labels".into(), json!(pod_labels(rec, owner_uid)));
    if let Some(a) = rec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.clone())
    {
        meta.insert("annotations".into(), json!(a));
    }
    if !owner_ref.is_null() {
        meta.insert("ownerReferences".into(), json!([owner_ref]));
    }
    let body = json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec});
    (body, pod_status(rec))
}

fn pod_status(rec: &PodRecord) -> Value {
    let p = &rec.pod;
    let running = p.phase == PodPhase::Running;
    let succeeded = p.phase == PodPhase::Succeeded;
    let ready = p.ready;
    let bool_str = |b: bool| if b { "True" } else { "False" };
    let ready_since = time(p.ready_at.or(p.started_at).unwrap_or(p.created_at));
    let created = time(p.created_at);
    let containers: Vec<Value> = rec
        .template
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let state = match (running || succeeded, p.started_at) {
                (true, Some(at)) if succeeded => json!({"terminated": {
                    "exitCode": 0, "reason": "Completed", "startedAt": time(at),
                    "finishedAt": time(p.ready_at.unwrap_or(at)),
                }}),
                (true, Some(at)) => json!({"running": {"startedAt": time(at)}}),
                _ => json!({"waiting": {
                    "reason": p.waiting_reason.clone().unwrap_or_else(|| "ContainerCreating".into()),
                    "message": p.waiting_message.clone().unwrap_or_default(),
                }}),
            };
            json!({
                "name": c.name, "image": c.image.clone().unwrap_or_default(), "imageID": "",
                "containerID": format!("sim://{}-{}", rec.uid(), c.name),
                "ready": ready, "started": running, "restartCount": 0, "state": state,
            })
        })
        .collect();
    let mut conditions = vec![
        json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": created}),
        json!({"type": "Initialized", "status": "True", "lastTransitionTime": created}),
        json!({"type": "ContainersReady", "status": bool_str(ready), "lastTransitionTime": ready_since}),
        json!({"type": "Ready", "status": bool_str(ready), "lastTransitionTime": ready_since}),
    ];
    if !ready && (running || succeeded) {
        for c in conditions.iter_mut().skip(2) {
            c["reason"] = json!(if succeeded {
                "PodCompleted"
            } else {
                "ContainersNotReady"
            });
        }
    }
    let phase = match p.phase {
        PodPhase::Pending => "Pending",
        PodPhase::Running => "Running",
        PodPhase::Succeeded => "Succeeded",
    };
    json!({
        "phase": phase,
        "hostIP": node_ip(&p.node),
        "hostIPs": [{"ip": node_ip(&p.node)}],
        "podIP": rec.ip, "podIPs": [{"ip": rec.ip}],
        "startTime": created,
        "qosClass": "BestEffort",
        "conditions": conditions,
        "containerStatuses": containers,
    })
}

/// The Event the scheduler or the kubelet writes about `rec` (its object's uid `uid`).
pub fn pod_event(rec: &PodRecord, uid: &str, e: super::pod::PodEvent, now: DateTime<Utc>) -> Value {
    use super::pod::PodEvent;
    let p = &rec.pod;
    let container = rec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let (reason, message, component) = match e {
        PodEvent::Scheduled => (
            "Scheduled",
            format!(
                "Successfully assigned {}/{} to {}",
                p.workload.namespace, p.name, p.node
            ),
            "default-scheduler",
        ),
        PodEvent::Started => (
            "Started",
            format!("Started container {container}"),
            "kubelet",
        ),
        PodEvent::Killing => (
            "Killing",
            format!("Stopping container {container}"),
            "kubelet",
        ),
    };
    json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": format!("{}.", p.name), "namespace": p.workload.namespace},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": p.name,
                           "namespace": p.workload.namespace, "uid": uid},
        "reason": reason, "message": message, "type": "Normal",
        "source": {"component": component, "host": p.node},
        "reportingComponent": component, "reportingInstance": p.node,
        "firstTimestamp": time(now), "lastTimestamp": time(now), "count": 1,
    })
}

/// `sim-node-<i>` → 172.18.0.<i+2>
pub fn node_ip(node: &str) -> String {
    let i: u32 = node
        .rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    format!("172.18.0.{}", i + 2)
}

/// One ReplicaSet of a Deployment (or Rollout), as its controller keeps it.
pub struct ReplicaSetView<'a> {
    /// Deployment or Rollout.
    pub owner_kind: WorkloadKind,
    pub deployment: &'a str,
    pub namespace: &'a str,
    pub deployment_uid: &'a str,
    pub hash: &'a str,
    pub revision: u64,
    pub template: &'a PodTemplateSpec,
    /// The Deployment's `spec.selector`.
    pub selector: &'a Value,
    /// Pods of this revision that are not terminating: its `spec.replicas`.
    pub replicas: usize,
    pub ready: usize,
    pub available: usize,
}

/// (body to create, status, merge patch of the fields that change)
pub fn replica_set_object(v: &ReplicaSetView<'_>) -> (Value, Value, Value) {
    let name = format!("{}-{}", v.deployment, v.hash);
    let (hash_label, revision_key, owner_api, owner_kind) = match v.owner_kind {
        WorkloadKind::Rollout => (
            "rollouts-pod-template-hash",
            "rollout.argoproj.io/revision",
            "argoproj.io/v1alpha1",
            "Rollout",
        ),
        _ => (
            "pod-template-hash",
            "deployment.kubernetes.io/revision",
            "apps/v1",
            "Deployment",
        ),
    };
    let mut labels = template_labels(v.template);
    labels.insert(hash_label.into(), v.hash.to_owned());
    let mut template = serde_json::to_value(v.template).unwrap_or_else(|_| json!({}));
    template["metadata"]["labels"] = json!(labels);
    let mut selector = v.selector.clone();
    selector["matchLabels"][hash_label] = json!(v.hash);
    let annotations = json!({revision_key: v.revision.to_string()});
    let body = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": v.namespace, "labels": labels,
                     "annotations": annotations,
                     "ownerReferences": [owner(owner_api, owner_kind, v.deployment, v.deployment_uid)]},
        "spec": {"replicas": v.replicas, "selector": selector, "template": template},
    });
    let status = json!({
        "replicas": v.replicas, "fullyLabeledReplicas": v.replicas,
        "readyReplicas": v.ready, "availableReplicas": v.available, "observedGeneration": 1,
    });
    let patch = json!({"metadata": {"annotations": annotations}, "spec": {"replicas": v.replicas}});
    (body, status, patch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kind: ObjKind, name: &str) -> Key {
        (kind, "ns".into(), name.into())
    }

    fn desired(kind: ObjKind, name: &str, status: Value) -> Desired {
        Desired {
            key: key(kind, name),
            owner: 1,
            sim_uid: "s1".into(),
            fingerprint: 0,
            body: json!({"metadata": {"name": name}}),
            status,
            spec: None,
        }
    }

    #[test]
    fn creates_once_then_writes_only_changes_and_deletes_what_is_gone() {
        let mut m = MirrorState::default();
        let none = HashSet::new();
        let no_owner = HashSet::new();
        let ops = m.plan(
            vec![
                desired(ObjKind::Pod, "p", json!({"phase": "Pending"})),
                desired(ObjKind::ReplicaSet, "rs", json!({})),
            ],
            &none,
            &no_owner,
        );
        assert!(matches!(&ops[0], Op::Create { key, .. } if key.0 == ObjKind::ReplicaSet));
        assert!(matches!(&ops[1], Op::Create { key, .. } if key.0 == ObjKind::Pod));
        // In flight: nothing more until the answer.
        assert!(m
            .plan(
                vec![desired(ObjKind::Pod, "p", json!({"phase": "Pending"}))],
                &none,
                &no_owner
            )
            .is_empty());
        m.created(&key(ObjKind::Pod, "p"), Some("u1".into()));
        let ops = m.plan(
            vec![desired(ObjKind::Pod, "p", json!({"phase": "Pending"}))],
            &none,
            &no_owner,
        );
        assert!(matches!(&ops[..], [Op::Status { .. }]), "{ops:?}");
        assert!(m
            .plan(
                vec![desired(ObjKind::Pod, "p", json!({"phase": "Pending"}))],
                &none,
                &no_owner
            )
            .is_empty());
        let ops = m.plan(
            vec![desired(ObjKind::Pod, "p", json!({"phase": "Running"}))],
            &none,
            &no_owner,
        );
        assert!(matches!(&ops[..], [Op::Status { .. }]));
        let draining = HashSet::from([key(ObjKind::Pod, "p")]);
        let ops = m.plan(
            vec![desired(ObjKind::Pod, "p", json!({"phase": "Running"}))],
            &draining,
            &no_owner,
        );
        assert!(
            matches!(&ops[..], [Op::Delete { grace: None, .. }]),
            "{ops:?}"
        );
        let ops = m.plan(vec![], &none, &no_owner);
        assert!(
            matches!(&ops[..], [Op::Delete { grace: Some(0), .. }]),
            "{ops:?}"
        );
    }

    #[test]
    fn a_kept_owner_keeps_its_objects_and_a_change_to_them_is_reported() {
        let mut m = MirrorState::default();
        let none = HashSet::new();
        let rs = || desired(ObjKind::ReplicaSet, "rs", json!({}));
        m.plan(vec![rs()], &none, &HashSet::new());
        m.created(&key(ObjKind::ReplicaSet, "rs"), Some("u1".into()));
        assert_eq!(m.take_changed(), HashSet::from([1]), "the create came back");
        assert!(m.take_changed().is_empty());
        m.plan(vec![rs()], &none, &HashSet::new());
        // Not desired, but its owner is kept: no delete.
        assert!(m.plan(vec![], &none, &HashSet::from([1])).is_empty());
        assert!(m.uid_of(&key(ObjKind::ReplicaSet, "rs")).is_some());
        // A failed write is a change to the owner, which is then not kept.
        m.forget_write(&key(ObjKind::ReplicaSet, "rs"));
        assert_eq!(m.take_changed(), HashSet::from([1]));
        // Neither desired nor kept: deleted.
        let ops = m.plan(vec![], &none, &HashSet::from([2]));
        assert!(
            matches!(&ops[..], [Op::Delete { grace: None, .. }]),
            "{ops:?}"
        );
    }
}

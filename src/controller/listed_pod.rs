//! A LIST page of pods decoded down to what the Pod-level barrier reads. A page holds up to
//! 500 pods, and a real pod is mostly what the barrier never reads (managedFields, resources,
//! probes, images, conditions): these types name only the fields read, serde skips the rest
//! without building it, and each pod becomes a `Pod` holding just those, so the barrier's
//! reading of a pod stays in one place ([`super::pods`]).

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStatus, EnvFromSource, EnvVar, Pod, PodSpec, PodStatus,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, ObjectMeta, OwnerReference, Time};
use kube::api::ListParams;
use kube::Client;
use serde::Deserialize;
use std::collections::BTreeMap;

/// One page of a pod LIST in `namespace`, or across the cluster.
pub(super) struct Page {
    pub pods: Vec<Pod>,
    /// Where the next page starts; `None` after the last.
    pub next: Option<String>,
}

pub(super) async fn list(
    client: &Client,
    namespace: Option<&str>,
    lp: &ListParams,
) -> Result<Page, kube::Error> {
    let url = match namespace {
        Some(ns) => format!("/api/v1/namespaces/{ns}/pods"),
        None => "/api/v1/pods".to_owned(),
    };
    let req = kube::core::Request::new(url)
        .list(lp)
        .map_err(kube::Error::BuildRequest)?;
    let page: List = client.request(req).await?;
    Ok(Page {
        pods: page.items.into_iter().map(Pod::from).collect(),
        next: page.metadata.continue_.filter(|c| !c.is_empty()),
    })
}

#[derive(Deserialize)]
struct List {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default)]
    items: Vec<Listed>,
}

#[derive(Deserialize)]
struct Listed {
    #[serde(default)]
    metadata: Meta,
    spec: Option<Spec>,
    status: Option<Status>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    annotations: Option<BTreeMap<String, String>>,
    owner_references: Option<Vec<OwnerReference>>,
    deletion_timestamp: Option<Time>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    containers: Vec<Reader>,
    init_containers: Option<Vec<Reader>>,
    volumes: Option<Vec<Volume>>,
}

/// A container as far as it reads Secrets: by env, and by the files it mounts (a `subPath`
/// mount is read at its start, as env is; a whole volume follows the Secret).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reader {
    #[serde(default)]
    name: String,
    env: Option<Vec<EnvVar>>,
    env_from: Option<Vec<EnvFromSource>>,
    volume_mounts: Option<Vec<VolumeMount>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    phase: Option<String>,
    start_time: Option<Time>,
    container_statuses: Option<Vec<Started>>,
}

/// A container's status as far as it tells when the container started.
#[derive(Deserialize)]
struct Started {
    state: Option<ContainerState>,
}

impl From<Reader> for Container {
    fn from(c: Reader) -> Self {
        Container {
            name: c.name,
            env: c.env,
            env_from: c.env_from,
            volume_mounts: c.volume_mounts,
            ..Container::default()
        }
    }
}

impl From<Listed> for Pod {
    fn from(p: Listed) -> Self {
        let m = p.metadata;
        Pod {
            metadata: ObjectMeta {
                name: m.name,
                namespace: m.namespace,
                uid: m.uid,
                annotations: m.annotations,
                owner_references: m.owner_references,
                deletion_timestamp: m.deletion_timestamp,
                ..ObjectMeta::default()
            },
            spec: p.spec.map(|s| PodSpec {
                containers: s.containers.into_iter().map(Container::from).collect(),
                init_containers: s
                    .init_containers
                    .map(|cs| cs.into_iter().map(Container::from).collect()),
                volumes: s.volumes,
                ..PodSpec::default()
            }),
            status: p.status.map(|s| PodStatus {
                phase: s.phase,
                start_time: s.start_time,
                container_statuses: s.container_statuses.map(|cs| {
                    cs.into_iter()
                        .map(|c| ContainerStatus {
                            state: c.state,
                            ..ContainerStatus::default()
                        })
                        .collect()
                }),
                ..PodStatus::default()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::rotation::consumers::Reads;
    use crate::workloads;

    fn pod(spec: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "metadata": {
                "name": "api-7d9f-abc", "namespace": "shop", "uid": "u1",
                "annotations": {"rotator.example/stamp": "s1"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "api-7d9f", "uid": "r1", "controller": true}],
                "deletionTimestamp": "2026-12-03T10:00:00Z",
                "managedFields": [{"manager": "kubelet", "operation": "Update",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {}}}]
            },
            "spec": spec,
            "status": {
                "phase": "Running", "startTime": "2026-12-03T09:00:00Z",
                "containerStatuses": [{"name": "app", "image": "app:1", "imageID": "x",
                    "ready": true, "restartCount": 0,
                    "state": {"running": {"startedAt": "2026-12-03T09:00:05Z"}}}],
                "conditions": [{"type": "Ready", "status": "True"}]
            }
        })
    }

    /// The pod in full and as listed here.
    fn both(spec: serde_json::Value) -> (Pod, Pod) {
        let full = pod(spec);
        let listed: Listed = serde_json::from_value(full.clone()).unwrap();
        (serde_json::from_value(full).unwrap(), Pod::from(listed))
    }

    fn reads(p: &Pod) -> Reads {
        let targets = [("twilio-creds".to_owned(), "token".to_owned())].into();
        workloads::reads(p.spec.as_ref().unwrap(), &targets)
    }

    /// The barrier reads a listed pod as it reads the whole pod: in every way a container
    /// can read the Secret (env, envFrom, an init container, a whole volume, a `subPath`
    /// mount, a projected volume) and by every other field it looks at.
    #[test]
    fn a_listed_pod_is_read_as_the_whole_pod() {
        let app = |extra: serde_json::Value| {
            let mut c = serde_json::json!({"name": "app", "image": "app:1",
                "resources": {"limits": {"cpu": "1"}}});
            c.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            c
        };
        let secret_volume = serde_json::json!([{"name": "creds",
            "secret": {"secretName": "twilio-creds"}}]);
        let cases = [
            (
                "env",
                serde_json::json!({"containers": [app(serde_json::json!({"env": [{"name": "T",
                    "valueFrom": {"secretKeyRef": {"name": "twilio-creds", "key": "token"}}}]}))]}),
                (true, false),
            ),
            (
                "envFrom in an init container",
                serde_json::json!({"containers": [app(serde_json::json!({}))],
                    "initContainers": [{"name": "init", "image": "init:1",
                        "envFrom": [{"secretRef": {"name": "twilio-creds"}}]}]}),
                (true, false),
            ),
            (
                "a whole volume",
                serde_json::json!({"containers": [app(serde_json::json!({"volumeMounts":
                    [{"name": "creds", "mountPath": "/etc/twilio"}]}))],
                    "volumes": secret_volume.clone()}),
                (false, true),
            ),
            (
                "a subPath mount",
                serde_json::json!({"containers": [app(serde_json::json!({"volumeMounts":
                    [{"name": "creds", "mountPath": "/etc/token", "subPath": "token"}]}))],
                    "volumes": secret_volume}),
                (true, false),
            ),
            (
                "a projected volume",
                serde_json::json!({"containers": [app(serde_json::json!({"volumeMounts":
                    [{"name": "all", "mountPath": "/etc/all"}]}))],
                    "volumes": [{"name": "all", "projected": {"sources":
                        [{"secret": {"name": "twilio-creds",
                            "items": [{"key": "token", "path": "token"}]}}]}}]}),
                (false, true),
            ),
        ];
        for (case, spec, (at_start, files)) in cases {
            let (whole, listed) = both(spec);
            let (r, l) = (reads(&whole), reads(&listed));
            assert_eq!(
                (r.at_start, r.files),
                (at_start, files),
                "{case}: the whole pod"
            );
            assert_eq!((l.at_start, l.files), (at_start, files), "{case}: listed");
        }
    }

    /// Every other field the barrier reads survives unchanged; what it does not read is not
    /// kept.
    #[test]
    fn a_listed_pod_keeps_what_the_barrier_reads() {
        let (pod, slim) = both(serde_json::json!({
            "containers": [{"name": "app", "image": "app:1"}], "nodeName": "node-1"}));
        let (m, s) = (&pod.metadata, &slim.metadata);
        assert_eq!(s.name, m.name);
        assert_eq!(s.namespace, m.namespace);
        assert_eq!(s.uid, m.uid);
        assert_eq!(s.annotations, m.annotations);
        assert_eq!(s.owner_references, m.owner_references);
        assert_eq!(s.deletion_timestamp, m.deletion_timestamp);
        assert!(m.managed_fields.is_some());
        assert_eq!(s.managed_fields, None);

        let (p, q) = (pod.spec.unwrap(), slim.spec.unwrap());
        assert_eq!(q.containers[0].name, p.containers[0].name);
        assert_eq!(q.containers[0].image, None);
        assert_eq!(q.node_name, None);

        let (p, q) = (pod.status.unwrap(), slim.status.unwrap());
        assert_eq!(q.phase, p.phase);
        assert_eq!(q.start_time, p.start_time);
        let states = |s: &PodStatus| {
            s.container_statuses
                .iter()
                .flatten()
                .map(|c| c.state.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(states(&q), states(&p));
        assert!(!states(&q).is_empty());
        assert_eq!(q.conditions, None);
    }
}

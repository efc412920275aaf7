//! What the kubelet resolves when it starts a container: env vars (a snapshot) and the files of
//! Secret/ConfigMap/projected volumes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, KeyToPath, PodSpec, Volume};

/// File name (or key) -> content.
pub type Data = BTreeMap<String, String>;

/// Current Secrets and ConfigMaps by `(namespace, name)`, decoded to UTF-8 (lossily). Shared,
/// so a pass reuses what the previous one decoded of an object that did not change.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    pub secrets: HashMap<(String, String), Arc<Data>>,
    pub config_maps: HashMap<(String, String), Arc<Data>>,
}

impl Sources {
    fn secret(&self, ns: &str, name: &str) -> Option<&Data> {
        self.secrets
            .get(&(ns.to_owned(), name.to_owned()))
            .map(|d| &**d)
    }

    fn config_map(&self, ns: &str, name: &str) -> Option<&Data> {
        self.config_maps
            .get(&(ns.to_owned(), name.to_owned()))
            .map(|d| &**d)
    }
}

/// What `fieldRef` env vars can see of the pod.
#[derive(Clone, Debug, Default)]
pub struct PodIdentity {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub node: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub service_account: String,
}

/// Why a container cannot start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartError {
    /// An env source is missing: the kubelet reports `CreateContainerConfigError`.
    Config(String),
    /// A volume source is missing: the pod stays `ContainerCreating` (FailedMount).
    Mount(String),
}

impl StartError {
    pub fn reason(&self) -> &'static str {
        match self {
            StartError::Config(_) => "CreateContainerConfigError",
            StartError::Mount(_) => "ContainerCreating",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            StartError::Config(m) | StartError::Mount(m) => m,
        }
    }
}

/// The environment of one container, as the kubelet builds it: `envFrom` sources in order (with
/// prefix), then `env` entries in order, `value`s expanded with `$(VAR)` against what precedes.
pub fn container_env(
    container: &Container,
    pod: &PodIdentity,
    src: &Sources,
) -> Result<Data, String> {
    let ns = pod.namespace.as_str();
    let mut env = Data::new();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        if let Some(r) = &from.secret_ref {
            match src.secret(ns, &r.name) {
                Some(data) => env.extend(
                    data.iter()
                        .map(|(k, v)| (format!("{prefix}{k}"), v.clone())),
                ),
                None if r.optional.unwrap_or(false) => {}
                None => return Err(format!("secret \"{}\" not found", r.name)),
            }
        }
        if let Some(r) = &from.config_map_ref {
            match src.config_map(ns, &r.name) {
                Some(data) => env.extend(
                    data.iter()
                        .map(|(k, v)| (format!("{prefix}{k}"), v.clone())),
                ),
                None if r.optional.unwrap_or(false) => {}
                None => return Err(format!("configmap \"{}\" not found", r.name)),
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (_, Some(from)) => {
                if let Some(r) = &from.secret_key_ref {
                    let optional = r.optional.unwrap_or(false);
                    match src.secret(ns, &r.name).map(|d| d.get(&r.key)) {
                        Some(Some(v)) => Some(v.clone()),
                        Some(None) if optional => None,
                        None if optional => None,
                        Some(None) => {
                            return Err(format!(
                                "couldn't find key {} in Secret {ns}/{}",
                                r.key, r.name
                            ))
                        }
                        None => return Err(format!("secret \"{}\" not found", r.name)),
                    }
                } else if let Some(r) = &from.config_map_key_ref {
                    let optional = r.optional.unwrap_or(false);
                    match src.config_map(ns, &r.name).map(|d| d.get(&r.key)) {
                        Some(Some(v)) => Some(v.clone()),
                        Some(None) if optional => None,
                        None if optional => None,
                        Some(None) => {
                            return Err(format!(
                                "couldn't find key {} in ConfigMap {ns}/{}",
                                r.key, r.name
                            ))
                        }
                        None => return Err(format!("configmap \"{}\" not found", r.name)),
                    }
                } else if let Some(r) = &from.field_ref {
                    field_value(&r.field_path, pod)
                } else {
                    // resourceFieldRef: resources are not simulated.
                    None
                }
            }
            (Some(v), None) => Some(expand(v, &env)),
            (None, None) => Some(String::new()),
        };
        if let Some(v) = value {
            env.insert(var.name.clone(), v);
        }
    }
    Ok(env)
}

fn field_value(path: &str, pod: &PodIdentity) -> Option<String> {
    let keyed = |prefix: &str, map: &BTreeMap<String, String>| {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.get(key).cloned().unwrap_or_default())
    };
    match path {
        "metadata.name" => Some(pod.name.clone()),
        "metadata.namespace" => Some(pod.namespace.clone()),
        "metadata.uid" => Some(pod.uid.clone()),
        "spec.nodeName" => Some(pod.node.clone()),
        "spec.serviceAccountName" => Some(pod.service_account.clone()),
        "status.podIP" | "status.podIPs" | "status.hostIP" | "status.hostIPs" => {
            Some("127.0.0.1".to_owned())
        }
        _ => keyed("metadata.labels['", &pod.labels)
            .or_else(|| keyed("metadata.annotations['", &pod.annotations)),
    }
}

/// Kubelet `$(VAR)` expansion: known names are replaced, unknown ones left as written, `$$`
/// escapes a dollar.
pub fn expand(input: &str, vars: &Data) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Files of a volume backed by Secrets/ConfigMaps; `Ok(None)` for other volume types.
pub fn volume_files(volume: &Volume, ns: &str, src: &Sources) -> Result<Option<Data>, String> {
    let fail = |m: String| {
        format!(
            "MountVolume.SetUp failed for volume \"{}\" : {m}",
            volume.name
        )
    };
    if let Some(s) = &volume.secret {
        let name = s.secret_name.as_deref().unwrap_or("");
        let files = project(
            src.secret(ns, name),
            s.items.as_deref(),
            s.optional,
            "Secret",
            ns,
            name,
        )
        .map_err(fail)?;
        return Ok(Some(files));
    }
    if let Some(c) = &volume.config_map {
        let files = project(
            src.config_map(ns, &c.name),
            c.items.as_deref(),
            c.optional,
            "ConfigMap",
            ns,
            &c.name,
        )
        .map_err(fail)?;
        return Ok(Some(files));
    }
    if let Some(p) = &volume.projected {
        let mut files = Data::new();
        let mut any = false;
        for source in p.sources.iter().flatten() {
            if let Some(s) = &source.secret {
                any = true;
                files.extend(
                    project(
                        src.secret(ns, &s.name),
                        s.items.as_deref(),
                        s.optional,
                        "Secret",
                        ns,
                        &s.name,
                    )
                    .map_err(fail)?,
                );
            }
            if let Some(c) = &source.config_map {
                any = true;
                files.extend(
                    project(
                        src.config_map(ns, &c.name),
                        c.items.as_deref(),
                        c.optional,
                        "ConfigMap",
                        ns,
                        &c.name,
                    )
                    .map_err(fail)?,
                );
            }
        }
        return Ok(any.then_some(files));
    }
    Ok(None)
}

fn project(
    data: Option<&Data>,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
    kind: &str,
    ns: &str,
    name: &str,
) -> Result<Data, String> {
    let optional = optional.unwrap_or(false);
    let Some(data) = data else {
        return if optional {
            Ok(Data::new())
        } else {
            Err(format!("{} \"{name}\" not found", kind.to_lowercase()))
        };
    };
    match items {
        None => Ok(data.clone()),
        Some(items) => {
            let mut files = Data::new();
            for item in items {
                match data.get(&item.key) {
                    Some(v) => {
                        files.insert(item.path.clone(), v.clone());
                    }
                    None if optional => {}
                    None => {
                        return Err(format!(
                            "configured to use key {} of {kind} {ns}/{name}, but it does not exist",
                            item.key
                        ))
                    }
                }
            }
            Ok(files)
        }
    }
}

/// One volume mount of some container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountSpec {
    pub path: String,
    pub volume: String,
    pub sub_path: Option<String>,
}

/// Mounts of all containers (init containers excluded), in order.
pub fn mounts_of(spec: &PodSpec) -> Vec<MountSpec> {
    spec.containers
        .iter()
        .flat_map(|c| c.volume_mounts.iter().flatten())
        .map(|m| MountSpec {
            path: m.mount_path.clone(),
            volume: m.name.clone(),
            sub_path: m.sub_path.clone().filter(|s| !s.is_empty()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ConfigMapEnvSource, ConfigMapKeySelector, EnvFromSource, EnvVar, EnvVarSource,
        ObjectFieldSelector, ProjectedVolumeSource, SecretEnvSource, SecretKeySelector,
        SecretProjection, SecretVolumeSource, VolumeProjection,
    };

    fn sources() -> Sources {
        let mut s = Sources::default();
        s.secrets.insert(
            ("ns".into(), "twilio".into()),
            Arc::new(Data::from([
                ("token".into(), "tok-1".into()),
                ("sid".into(), "AC1".into()),
            ])),
        );
        s.config_maps.insert(
            ("ns".into(), "cfg".into()),
            Arc::new(Data::from([("region".into(), "us1".into())])),
        );
        s
    }

    fn pod() -> PodIdentity {
        PodIdentity {
            name: "web-abc".into(),
            namespace: "ns".into(),
            node: "sim-node-0".into(),
            labels: BTreeMap::from([("app".into(), "web".into())]),
            ..Default::default()
        }
    }

    fn secret_var(name: &str, secret: &str, key: &str, optional: Option<bool>) -> EnvVar {
        EnvVar {
            name: name.into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.into(),
                    key: key.into(),
                    optional,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn value_var(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            ..Default::default()
        }
    }

    #[test]
    fn env_resolves_values_refs_and_env_from_with_prefix() {
        let c = Container {
            name: "app".into(),
            env_from: Some(vec![
                EnvFromSource {
                    prefix: Some("TW_".into()),
                    secret_ref: Some(SecretEnvSource {
                        name: "twilio".into(),
                        optional: None,
                    }),
                    ..Default::default()
                },
                EnvFromSource {
                    config_map_ref: Some(ConfigMapEnvSource {
                        name: "cfg".into(),
                        optional: None,
                    }),
                    ..Default::default()
                },
            ]),
            env: Some(vec![
                secret_var("TOKEN", "twilio", "token", None),
                value_var("URL", "https://$(TW_sid):$(TOKEN)@x/$(NOPE)/$$(TOKEN)"),
                EnvVar {
                    name: "REGION".into(),
                    value_from: Some(EnvVarSource {
                        config_map_key_ref: Some(ConfigMapKeySelector {
                            name: "cfg".into(),
                            key: "region".into(),
                            optional: None,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                EnvVar {
                    name: "POD".into(),
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "metadata.name".into(),
                            api_version: None,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                EnvVar {
                    name: "APP".into(),
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "metadata.labels['app']".into(),
                            api_version: None,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let env = container_env(&c, &pod(), &sources()).unwrap();
        assert_eq!(env["TW_token"], "tok-1");
        assert_eq!(env["TW_sid"], "AC1");
        assert_eq!(env["region"], "us1");
        assert_eq!(env["TOKEN"], "tok-1");
        assert_eq!(env["URL"], "https://AC1:tok-1@x/$(NOPE)/$(TOKEN)");
        assert_eq!(env["REGION"], "us1");
        assert_eq!(env["POD"], "web-abc");
        assert_eq!(env["APP"], "web");
    }

    #[test]
    fn later_env_overrides_env_from() {
        let c = Container {
            env_from: Some(vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: "twilio".into(),
                    optional: None,
                }),
                ..Default::default()
            }]),
            env: Some(vec![value_var("token", "literal")]),
            ..Default::default()
        };
        assert_eq!(
            container_env(&c, &pod(), &sources()).unwrap()["token"],
            "literal"
        );
    }

    #[test]
    fn missing_sources_fail_unless_optional() {
        let missing_secret = Container {
            env: Some(vec![secret_var("T", "gone", "token", None)]),
            ..Default::default()
        };
        assert_eq!(
            container_env(&missing_secret, &pod(), &sources()).unwrap_err(),
            "secret \"gone\" not found"
        );
        let missing_key = Container {
            env: Some(vec![secret_var("T", "twilio", "nope", None)]),
            ..Default::default()
        };
        assert_eq!(
            container_env(&missing_key, &pod(), &sources()).unwrap_err(),
            "couldn't find key nope in Secret ns/twilio"
        );
        let optional = Container {
            env: Some(vec![
                secret_var("T", "gone", "token", Some(true)),
                secret_var("U", "twilio", "nope", Some(true)),
            ]),
            ..Default::default()
        };
        let env = container_env(&optional, &pod(), &sources()).unwrap();
        assert!(env.is_empty());
        let env_from_missing = Container {
            env_from: Some(vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: "gone".into(),
                    optional: None,
                }),
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert!(container_env(&env_from_missing, &pod(), &sources()).is_err());
    }

    #[test]
    fn secret_volume_with_items_and_projected_sources() {
        let plain = Volume {
            name: "creds".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some("twilio".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let files = volume_files(&plain, "ns", &sources()).unwrap().unwrap();
        assert_eq!(
            files,
            Data::from([
                ("token".into(), "tok-1".into()),
                ("sid".into(), "AC1".into())
            ])
        );

        let items = Volume {
            name: "creds".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some("twilio".into()),
                items: Some(vec![KeyToPath {
                    key: "token".into(),
                    path: "auth/token.txt".into(),
                    mode: None,
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let files = volume_files(&items, "ns", &sources()).unwrap().unwrap();
        assert_eq!(
            files,
            Data::from([("auth/token.txt".into(), "tok-1".into())])
        );

        let projected = Volume {
            name: "all".into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![
                    VolumeProjection {
                        secret: Some(SecretProjection {
                            name: "twilio".into(),
                            items: Some(vec![KeyToPath {
                                key: "sid".into(),
                                path: "sid".into(),
                                mode: None,
                            }]),
                            optional: None,
                        }),
                        ..Default::default()
                    },
                    VolumeProjection {
                        secret: Some(SecretProjection {
                            name: "gone".into(),
                            items: None,
                            optional: Some(true),
                        }),
                        ..Default::default()
                    },
                ]),
                default_mode: None,
            }),
            ..Default::default()
        };
        let files = volume_files(&projected, "ns", &sources()).unwrap().unwrap();
        assert_eq!(files, Data::from([("sid".into(), "AC1".into())]));
    }

    #[test]
    fn missing_volume_source_fails_and_other_volumes_are_ignored() {
        let missing = Volume {
            name: "creds".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some("gone".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = volume_files(&missing, "ns", &sources()).unwrap_err();
        assert!(err.contains("secret \"gone\" not found"), "{err}");
        let empty_dir = Volume {
            name: "tmp".into(),
            empty_dir: Some(Default::default()),
            ..Default::default()
        };
        assert_eq!(volume_files(&empty_dir, "ns", &sources()).unwrap(), None);
    }

    #[test]
    fn expansion_edge_cases() {
        let vars = Data::from([("A".into(), "1".into())]);
        assert_eq!(expand("$(A)$(A)", &vars), "11");
        assert_eq!(expand("$A $(A", &vars), "$A $(A");
        assert_eq!(expand("$$$(A)", &vars), "$1");
        assert_eq!(expand("", &vars), "");
    }
}

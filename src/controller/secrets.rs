//! Secret reads and writes. Every write is a server-side apply with field manager
//! `token-rotator` that names only the keys the operator owns, so other keys (and fields other
//! managers own) are left alone, and a key the operator stops applying is removed.

use crate::api::{TokenRotationSpec, FINALIZER, STAGING_LABEL};
use crate::providers::CredentialKind;
pub use crate::secret::Credential;
use crate::secret::SecretString;
use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::Client;
use std::collections::BTreeMap;

const STAGING_ID: &str = "rotationId";
const STAGING_TOKEN: &str = "token";
const STAGING_KEY_SID: &str = "keySid";
const STAGING_PREVIOUS: &str = "previousToken";
const STAGING_PREVIOUS_KEY_SID: &str = "previousKeySid";

/// What the target Secrets should hold at a given point of the rotation. `old` is `None` only
/// for an API key rotation that creates the first key.
#[derive(Debug, Clone, Copy)]
pub enum Distribution<'a> {
    /// From distribution until promotion: the new credential, and the previous token under
    /// `previousTokenKey`; webhook validators accept the old token (Twilio still signs with it)
    /// then the new one.
    New {
        new: &'a Credential,
        old: Option<&'a Credential>,
    },
    /// From promotion until retirement: as [`Distribution::New`], but the new token now signs,
    /// so it comes first for webhook validators; the old one stays for requests signed before.
    Promoted {
        new: &'a Credential,
        old: Option<&'a Credential>,
    },
    /// After retirement: the new credential only.
    Final { new: &'a Credential },
    /// After an abort: the old credential only.
    Restore { old: Option<&'a Credential> },
}

impl<'a> Distribution<'a> {
    /// The credential consumers call the API with.
    fn current(&self) -> Option<&'a Credential> {
        match *self {
            Self::New { new, .. } | Self::Promoted { new, .. } | Self::Final { new } => Some(new),
            Self::Restore { old } => old,
        }
    }

    /// The token kept under `previousTokenKey`, if any.
    fn previous(&self) -> Option<&'a Credential> {
        match *self {
            Self::New { old, .. } | Self::Promoted { old, .. } => old,
            Self::Final { .. } | Self::Restore { .. } => None,
        }
    }

    /// Every token a webhook validator must accept, the one Twilio signs with (the primary)
    /// first.
    fn webhook_tokens(&self) -> SecretString {
        let tokens: Vec<&Credential> = match *self {
            Self::New { new, old } => old.into_iter().chain([new]).collect(),
            Self::Promoted { new, old } => [new].into_iter().chain(old).collect(),
            Self::Final { new } => vec![new],
            Self::Restore { old } => old.into_iter().collect(),
        };
        // Built in place so no unzeroized copy of a token is left behind by a reallocation.
        let len = tokens.iter().map(|t| t.secret.expose().len() + 1).sum();
        let mut out = String::with_capacity(len);
        for (i, t) in tokens.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(t.secret.expose());
        }
        SecretString::new(out)
    }
}

/// Desired data per Secret name in one namespace: the target Secrets when it is a target
/// namespace, and for Auth Token rotation the operator's credentials Secret when it is the
/// credentials namespace; merged so each Secret gets one apply (a second apply by the same
/// manager would drop the first one's keys).
pub fn desired(
    spec: &TokenRotationSpec,
    kind: CredentialKind,
    d: Distribution<'_>,
    targets: bool,
    credentials: bool,
) -> BTreeMap<String, BTreeMap<String, SecretString>> {
    let (current, previous) = (d.current(), d.previous());
    let mut out: BTreeMap<String, BTreeMap<String, SecretString>> = BTreeMap::new();
    let target_secrets = if targets {
        spec.secrets.as_slice()
    } else {
        &[]
    };
    for t in target_secrets {
        let data = out.entry(t.name.clone()).or_default();
        if let Some(c) = current {
            data.insert(t.token_key.clone(), c.secret.clone());
            if let (Some(k), Some(sid)) = (&t.key_sid_key, &c.key_sid) {
                data.insert(k.clone(), SecretString::new(sid.clone()));
            }
        }
        if let (Some(k), Some(prev)) = (&t.previous_token_key, previous) {
            data.insert(k.clone(), prev.secret.clone());
        }
        if let Some(k) = &t.account_sid_key {
            data.insert(
                k.clone(),
                SecretString::new(spec.twilio.account_sid.clone()),
            );
        }
        if let Some(k) = &t.webhook_tokens_key {
            data.insert(k.clone(), d.webhook_tokens());
        }
    }
    // Auth Token rotation: the operator authenticates with the token it rotates. An API key
    // rotation authenticates with a credential it never changes.
    if credentials && kind.rotates_operator_credential() {
        if let Some(c) = current {
            let creds = &spec.twilio.credentials_secret_ref;
            out.entry(creds.name.clone())
                .or_default()
                .insert(creds.key.clone(), c.secret.clone());
        }
    }
    out
}

fn encode(data: &BTreeMap<String, SecretString>) -> serde_json::Map<String, serde_json::Value> {
    let b64 = base64::engine::general_purpose::STANDARD;
    data.iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(b64.encode(v.expose()))))
        .collect()
}

/// Applies one resource's keys into one Secret as `field_manager`, creating it if missing.
pub async fn apply(
    client: &Client,
    field_manager: &str,
    namespace: &str,
    name: &str,
    data: &BTreeMap<String, SecretString>,
) -> Result<(), kube::Error> {
    let body = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "data": encode(data),
    });
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    api.patch(
        name,
        &PatchParams::apply(field_manager).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// Reads keys of one Secret with one request; `None` for a key (or a Secret) that does not
/// exist.
pub async fn read_keys<const N: usize>(
    client: &Client,
    namespace: &str,
    name: &str,
    keys: [&str; N],
) -> Result<[Option<SecretString>; N], kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api.get_opt(name).await?;
    let data = secret.as_ref().and_then(|s| s.data.as_ref());
    Ok(keys.map(|k| {
        data.and_then(|d| d.get(k))
            .and_then(|b| SecretString::from_bytes(&b.0))
    }))
}

/// Whether a Secret's key holds an expected value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    Holds,
    /// Missing or different; `manager` is the field manager that last wrote the key (or the
    /// Secret), other than this operator, when `managedFields` tells.
    Differs {
        manager: Option<String>,
    },
}

/// Compares one key of one Secret with `expected`, in memory; `ours` is this resource's
/// field manager.
pub async fn key_writer(
    client: &Client,
    ours: &str,
    namespace: &str,
    name: &str,
    key: &str,
    expected: &SecretString,
) -> Result<KeyState, kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let Some(secret) = api.get_opt(name).await? else {
        return Ok(KeyState::Differs { manager: None });
    };
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|b| SecretString::from_bytes(&b.0));
    if value.as_ref() == Some(expected) {
        return Ok(KeyState::Holds);
    }
    Ok(KeyState::Differs {
        manager: last_writer(&secret, ours, key),
    })
}

/// Which of `wanted` (namespace, Secret, key) do not hold `expected` (compared in memory),
/// each with the field manager that last wrote it; with `first`, stops at the first found. An
/// error names the Secret (`namespace/name`) it could not read.
pub async fn lacking<'a>(
    client: &Client,
    ours: &str,
    wanted: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
    expected: &SecretString,
    first: bool,
) -> Result<Vec<crate::rotation::RevertedKey>, (String, kube::Error)> {
    let mut out = Vec::new();
    for (ns, name, key) in wanted {
        match key_writer(client, ours, ns, name, key, expected).await {
            Ok(KeyState::Holds) => {}
            Ok(KeyState::Differs { manager }) => {
                out.push(crate::rotation::RevertedKey {
                    namespace: ns.to_owned(),
                    secret: name.to_owned(),
                    key: key.to_owned(),
                    manager,
                });
                if first {
                    break;
                }
            }
            Err(e) => return Err((format!("{ns}/{name}"), e)),
        }
    }
    Ok(out)
}

/// The manager other than `ours` that last wrote `data.<key>` (else anything in `data`).
fn last_writer(secret: &Secret, ours: &str, key: &str) -> Option<String> {
    let entries = secret
        .metadata
        .managed_fields
        .as_deref()
        .unwrap_or_default();
    let others = || {
        entries
            .iter()
            .filter(|e| e.manager.as_deref().is_some_and(|m| m != ours))
    };
    let owns = |e: &&k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry,
                path: &[&str]| {
        let mut v = e.fields_v1.as_ref().map(|f| &f.0);
        for p in path {
            v = v.and_then(|x| x.get(*p));
        }
        v.is_some()
    };
    let field = format!("f:{key}");
    let newest = |path: &[&str]| {
        others()
            .filter(|e| owns(e, path))
            .max_by_key(|e| e.time.as_ref().map(|t| t.0))
            .and_then(|e| e.manager.clone())
    };
    newest(&["f:data", &field]).or_else(|| newest(&["f:data"]))
}

/// The API server refused a write because the namespace is being deleted.
pub fn namespace_terminating(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403 && s.message.contains("being terminated"))
}

/// A rotation's credentials: the new one and the one it replaces.
pub struct Pair {
    pub new: Credential,
    /// Always set for an Auth Token; `None` for an API key rotation that creates the first key.
    pub previous: Option<Credential>,
}

/// The staging Secret's content: a rotation's pair, under its ID.
pub struct Staged {
    pub rotation_id: String,
    pub new: Credential,
    /// Always set for an Auth Token; `None` for an API key rotation that creates the first key.
    pub previous: Option<Credential>,
}

fn credential(
    get: &impl Fn(&str) -> Option<SecretString>,
    secret_key: &str,
    sid_key: &str,
) -> Option<Credential> {
    let secret = get(secret_key).filter(|s| !s.is_empty())?;
    Some(Credential {
        key_sid: get(sid_key).map(|s| s.expose().to_owned()),
        secret,
    })
}

/// The content of a staging Secret: `None` when it lacks the rotation ID or the new credential.
pub fn staged_in(secret: &Secret) -> Option<Staged> {
    let get = |k: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .and_then(|b| SecretString::from_bytes(&b.0))
    };
    let (Some(id), Some(new)) = (
        get(STAGING_ID),
        credential(&get, STAGING_TOKEN, STAGING_KEY_SID),
    ) else {
        return None;
    };
    Some(Staged {
        rotation_id: id.expose().to_owned(),
        new,
        previous: credential(&get, STAGING_PREVIOUS, STAGING_PREVIOUS_KEY_SID),
    })
}

/// Stores the new credential (shown by Twilio only once) with the old one, owned by the
/// TokenRotation so that deleting the resource removes it. It carries the operator's
/// finalizer: deleting its namespace cannot take it before the rotation is rolled back.
/// Returns the version written.
pub async fn write_staging(
    client: &Client,
    field_manager: &str,
    namespace: &str,
    owner: Option<&OwnerReference>,
    name: &str,
    rotation_id: &str,
    pair: &Pair,
) -> Result<Option<String>, kube::Error> {
    let owner_name = owner.map(|o| o.name.as_str()).unwrap_or_default();
    let mut data = BTreeMap::new();
    data.insert(
        STAGING_ID.to_owned(),
        SecretString::new(rotation_id.to_owned()),
    );
    let mut put = |secret_key: &str, sid_key: &str, c: &Credential| {
        data.insert(secret_key.to_owned(), c.secret.clone());
        if let Some(sid) = &c.key_sid {
            data.insert(sid_key.to_owned(), SecretString::new(sid.clone()));
        }
    };
    put(STAGING_TOKEN, STAGING_KEY_SID, &pair.new);
    if let Some(p) = &pair.previous {
        put(STAGING_PREVIOUS, STAGING_PREVIOUS_KEY_SID, p);
    }
    let body = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {STAGING_LABEL: owner_name},
            "ownerReferences": owner.into_iter().collect::<Vec<_>>(),
            "finalizers": [FINALIZER],
        },
        "type": "Opaque",
        "data": encode(&data),
    });
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let written = api
        .patch(
            name,
            &PatchParams::apply(field_manager).force(),
            &Patch::Apply(&body),
        )
        .await?;
    Ok(written.metadata.resource_version)
}

/// Deletes a Secret, first dropping the finalizer a staging Secret carries.
pub async fn delete(client: &Client, namespace: &str, name: &str) -> Result<(), kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let unpin = serde_json::json!({"metadata": {"finalizers": null}});
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&unpin))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(e),
    }
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TokenRotation's namespace: targets and credentials Secret alike.
    fn desired(
        spec: &TokenRotationSpec,
        d: Distribution<'_>,
    ) -> BTreeMap<String, BTreeMap<String, SecretString>> {
        let kind = CredentialKind::of(spec).unwrap();
        super::desired(spec, kind, d, true, true)
    }

    fn tok(s: &str) -> Credential {
        Credential::auth_token(SecretString::new(s))
    }

    fn key(sid: &str, secret: &str) -> Credential {
        Credential {
            key_sid: Some(sid.into()),
            secret: SecretString::new(secret),
        }
    }

    fn key_spec() -> TokenRotationSpec {
        serde_json::from_value(serde_json::json!({
            "twilio": {"accountSid": "AC0123456789abcdef0123456789abcdef",
                       "credentialsSecretRef": {"name": "admin", "key": "authToken"}},
            "apiKey": {},
            "secrets": [
                {"name": "creds", "tokenKey": "SECRET", "keySidKey": "KEY", "accountSidKey": "SID"},
            ]
        }))
        .unwrap()
    }

    /// An API key rotation writes SID and secret together and never touches the credential the
    /// operator manages keys with.
    #[test]
    fn api_key_distribution_pairs_sid_and_secret_and_leaves_the_operator_credential() {
        let (new, old) = (key("SKnew", "new-secret"), key("SKold", "old-secret"));
        for d in [
            Distribution::New {
                new: &new,
                old: Some(&old),
            },
            Distribution::Promoted {
                new: &new,
                old: Some(&old),
            },
            Distribution::Final { new: &new },
        ] {
            let m = desired(&key_spec(), d);
            assert_eq!(m.len(), 1, "only the target Secret: {:?}", m.keys());
            assert_eq!(m["creds"]["KEY"].expose(), "SKnew");
            assert_eq!(m["creds"]["SECRET"].expose(), "new-secret");
            assert_eq!(
                m["creds"]["SID"].expose(),
                "AC0123456789abcdef0123456789abcdef"
            );
        }
        let r = desired(&key_spec(), Distribution::Restore { old: Some(&old) });
        assert_eq!(r["creds"]["KEY"].expose(), "SKold");
        assert_eq!(r["creds"]["SECRET"].expose(), "old-secret");
        // Aborting the rotation that created the first key leaves no key behind.
        let none = desired(&key_spec(), Distribution::Restore { old: None });
        assert_eq!(none["creds"].keys().collect::<Vec<_>>(), ["SID"]);
    }

    fn spec() -> TokenRotationSpec {
        serde_json::from_value(serde_json::json!({
            "twilio": {"accountSid": "AC0123456789abcdef0123456789abcdef",
                       "credentialsSecretRef": {"name": "admin", "key": "authToken"}},
            "authToken": {},
            "secrets": [
                {"name": "creds", "tokenKey": "TOKEN", "previousTokenKey": "PREV", "accountSidKey": "SID",
                 "webhookTokensKey": "WEBHOOK"},
                {"name": "admin", "tokenKey": "consumerToken"}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn new_distribution_carries_previous_and_updates_the_operator_credential() {
        let (new, old) = (tok("new"), tok("old"));
        let d = desired(
            &spec(),
            Distribution::New {
                new: &new,
                old: Some(&old),
            },
        );
        assert_eq!(d["creds"]["TOKEN"].expose(), "new");
        assert_eq!(d["creds"]["PREV"].expose(), "old");
        assert_eq!(
            d["creds"]["SID"].expose(),
            "AC0123456789abcdef0123456789abcdef"
        );
        // The credentials Secret is also a target: both keys in one apply.
        assert_eq!(d["admin"]["consumerToken"].expose(), "new");
        assert_eq!(d["admin"]["authToken"].expose(), "new");
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn final_and_restore_drop_the_previous_key() {
        let (new, old) = (tok("new"), tok("old"));
        let f = desired(&spec(), Distribution::Final { new: &new });
        assert!(!f["creds"].contains_key("PREV"));
        assert_eq!(f["creds"]["TOKEN"].expose(), "new");
        let r = desired(&spec(), Distribution::Restore { old: Some(&old) });
        assert!(!r["creds"].contains_key("PREV"));
        assert_eq!(r["creds"]["TOKEN"].expose(), "old");
        assert_eq!(r["admin"]["authToken"].expose(), "old");
    }

    /// The webhook key at each step: the primary (the token Twilio signs with) first, and the
    /// primary is always in the list.
    #[test]
    fn webhook_key_lists_the_signing_token_first_at_every_step() {
        let (new, old) = (tok("new"), tok("old"));
        let webhook = |d| desired(&spec(), d)["creds"]["WEBHOOK"].expose().to_owned();
        // Before promotion Twilio still signs with the old token.
        assert_eq!(
            webhook(Distribution::New {
                new: &new,
                old: Some(&old)
            }),
            "old,new"
        );
        // After promotion the new token signs; the old one stays for requests in flight.
        assert_eq!(
            webhook(Distribution::Promoted {
                new: &new,
                old: Some(&old)
            }),
            "new,old"
        );
        assert_eq!(webhook(Distribution::Final { new: &new }), "new");
        assert_eq!(webhook(Distribution::Restore { old: Some(&old) }), "old");
    }

    #[test]
    fn promoted_keeps_token_and_previous_keys_as_before_promotion() {
        let (new, old) = (tok("new"), tok("old"));
        let before = desired(
            &spec(),
            Distribution::New {
                new: &new,
                old: Some(&old),
            },
        );
        let after = desired(
            &spec(),
            Distribution::Promoted {
                new: &new,
                old: Some(&old),
            },
        );
        let without_webhook = |m: &BTreeMap<String, BTreeMap<String, SecretString>>| {
            let mut m = m.clone();
            m.get_mut("creds").unwrap().remove("WEBHOOK");
            m
        };
        assert_eq!(without_webhook(&before), without_webhook(&after));
        assert_eq!(after["creds"]["TOKEN"].expose(), "new");
        assert_eq!(after["creds"]["PREV"].expose(), "old");
    }

    #[test]
    fn webhook_key_only_where_configured() {
        let (new, old) = (tok("new"), tok("old"));
        let d = desired(
            &spec(),
            Distribution::New {
                new: &new,
                old: Some(&old),
            },
        );
        assert!(!d["admin"].contains_key("WEBHOOK"));
        assert_eq!(
            d["creds"].keys().collect::<Vec<_>>(),
            ["PREV", "SID", "TOKEN", "WEBHOOK"]
        );
    }
}

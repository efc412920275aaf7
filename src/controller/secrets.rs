//! Secret reads and writes. Every write is a server-side apply with field manager
//! `token-rotator` that names only the keys the operator owns, so other keys (and fields other
//! managers own) are left alone, and a key the operator stops applying is removed.

use crate::api::{TokenRotation, TokenRotationSpec, FIELD_MANAGER, STAGING_LABEL};
use crate::secret::SecretString;
use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use std::collections::BTreeMap;

const STAGING_ID: &str = "rotationId";
const STAGING_TOKEN: &str = "token";
const STAGING_PREVIOUS: &str = "previousToken";

/// What the target Secrets should hold at a given point of the rotation.
#[derive(Debug, Clone, Copy)]
pub enum Distribution<'a> {
    /// From distribution until promotion: the new token, and the previous one under
    /// `previousTokenKey`; webhook validators accept the old token (Twilio still signs with it)
    /// then the new one.
    New {
        new: &'a SecretString,
        old: &'a SecretString,
    },
    /// From promotion until retirement: as [`Distribution::New`], but the new token now signs,
    /// so it comes first for webhook validators; the old one stays for requests signed before.
    Promoted {
        new: &'a SecretString,
        old: &'a SecretString,
    },
    /// After retirement: the new token only.
    Final { new: &'a SecretString },
    /// After an abort: the old token only.
    Restore { old: &'a SecretString },
}

impl<'a> Distribution<'a> {
    /// The token consumers call the API with.
    fn current(&self) -> &'a SecretString {
        match *self {
            Self::New { new, .. } | Self::Promoted { new, .. } | Self::Final { new } => new,
            Self::Restore { old } => old,
        }
    }

    /// The token kept under `previousTokenKey`, if any.
    fn previous(&self) -> Option<&'a SecretString> {
        match *self {
            Self::New { old, .. } | Self::Promoted { old, .. } => Some(old),
            Self::Final { .. } | Self::Restore { .. } => None,
        }
    }

    /// Every token a webhook validator must accept, the one Twilio signs with (the primary)
    /// first.
    fn webhook_tokens(&self) -> SecretString {
        let tokens: Vec<&SecretString> = match *self {
            Self::New { new, old } => vec![old, new],
            Self::Promoted { new, old } => vec![new, old],
            Self::Final { new } => vec![new],
            Self::Restore { old } => vec![old],
        };
        // Built in place so no unzeroized copy of a token is left behind by a reallocation.
        let len = tokens.iter().map(|t| t.expose().len() + 1).sum();
        let mut out = String::with_capacity(len);
        for (i, t) in tokens.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(t.expose());
        }
        SecretString::new(out)
    }
}

/// Desired data per Secret name (targets and the operator's credentials Secret), merged so each
/// Secret gets one apply (a second apply by the same manager would drop the first one's keys).
pub fn desired(
    spec: &TokenRotationSpec,
    d: Distribution<'_>,
) -> BTreeMap<String, BTreeMap<String, SecretString>> {
    let (current, previous) = (d.current(), d.previous());
    let mut out: BTreeMap<String, BTreeMap<String, SecretString>> = BTreeMap::new();
    for t in &spec.secrets {
        let data = out.entry(t.name.clone()).or_default();
        data.insert(t.token_key.clone(), current.clone());
        if let (Some(k), Some(prev)) = (&t.previous_token_key, previous) {
            data.insert(k.clone(), prev.clone());
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
    let creds = &spec.twilio.credentials_secret_ref;
    out.entry(creds.name.clone())
        .or_default()
        .insert(creds.key.clone(), current.clone());
    out
}

fn encode(data: &BTreeMap<String, SecretString>) -> serde_json::Map<String, serde_json::Value> {
    let b64 = base64::engine::general_purpose::STANDARD;
    data.iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(b64.encode(v.expose()))))
        .collect()
}

/// Applies the operator's keys into one Secret, creating it if missing.
pub async fn apply(
    client: &Client,
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
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// Reads one key; `Ok(None)` when the Secret or the key does not exist.
pub async fn read_key(
    client: &Client,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<Option<SecretString>, kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let Some(secret) = api.get_opt(name).await? else {
        return Ok(None);
    };
    Ok(secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|b| SecretString::from_bytes(&b.0)))
}

/// The staging Secret's content.
pub struct Staged {
    pub rotation_id: String,
    pub token: SecretString,
    pub previous: SecretString,
}

pub async fn read_staging(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<Staged>, kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let Some(secret) = api.get_opt(name).await? else {
        return Ok(None);
    };
    let get = |k: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .and_then(|b| SecretString::from_bytes(&b.0))
    };
    match (get(STAGING_ID), get(STAGING_TOKEN), get(STAGING_PREVIOUS)) {
        (Some(id), Some(token), Some(previous)) if !token.is_empty() => Ok(Some(Staged {
            rotation_id: id.expose().to_owned(),
            token,
            previous,
        })),
        _ => Ok(None),
    }
}

/// Stores the new token (shown by Twilio only once) with the old one, owned by the
/// TokenRotation so that deleting the resource removes it.
pub async fn write_staging(
    client: &Client,
    tr: &TokenRotation,
    name: &str,
    staged: &Staged,
) -> Result<(), kube::Error> {
    let namespace = tr.namespace().unwrap_or_default();
    let owner = tr.controller_owner_ref(&());
    let mut data = BTreeMap::new();
    data.insert(
        STAGING_ID.to_owned(),
        SecretString::new(staged.rotation_id.clone()),
    );
    data.insert(STAGING_TOKEN.to_owned(), staged.token.clone());
    data.insert(STAGING_PREVIOUS.to_owned(), staged.previous.clone());
    let body = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {STAGING_LABEL: tr.name_any()},
            "ownerReferences": owner.into_iter().collect::<Vec<_>>(),
        },
        "type": "Opaque",
        "data": encode(&data),
    });
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

pub async fn delete(client: &Client, namespace: &str, name: &str) -> Result<(), kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let (new, old) = (SecretString::new("new"), SecretString::new("old"));
        let d = desired(
            &spec(),
            Distribution::New {
                new: &new,
                old: &old,
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
        let (new, old) = (SecretString::new("new"), SecretString::new("old"));
        let f = desired(&spec(), Distribution::Final { new: &new });
        assert!(!f["creds"].contains_key("PREV"));
        assert_eq!(f["creds"]["TOKEN"].expose(), "new");
        let r = desired(&spec(), Distribution::Restore { old: &old });
        assert!(!r["creds"].contains_key("PREV"));
        assert_eq!(r["creds"]["TOKEN"].expose(), "old");
        assert_eq!(r["admin"]["authToken"].expose(), "old");
    }

    /// The webhook key at each step: the primary (the token Twilio signs with) first, and the
    /// primary is always in the list.
    #[test]
    fn webhook_key_lists_the_signing_token_first_at_every_step() {
        let (new, old) = (SecretString::new("new"), SecretString::new("old"));
        let webhook = |d| desired(&spec(), d)["creds"]["WEBHOOK"].expose().to_owned();
        // Before promotion Twilio still signs with the old token.
        assert_eq!(
            webhook(Distribution::New {
                new: &new,
                old: &old
            }),
            "old,new"
        );
        // After promotion the new token signs; the old one stays for requests in flight.
        assert_eq!(
            webhook(Distribution::Promoted {
                new: &new,
                old: &old
            }),
            "new,old"
        );
        assert_eq!(webhook(Distribution::Final { new: &new }), "new");
        assert_eq!(webhook(Distribution::Restore { old: &old }), "old");
    }

    #[test]
    fn promoted_keeps_token_and_previous_keys_as_before_promotion() {
        let (new, old) = (SecretString::new("new"), SecretString::new("old"));
        let before = desired(
            &spec(),
            Distribution::New {
                new: &new,
                old: &old,
            },
        );
        let after = desired(
            &spec(),
            Distribution::Promoted {
                new: &new,
                old: &old,
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
        let (new, old) = (SecretString::new("new"), SecretString::new("old"));
        let d = desired(
            &spec(),
            Distribution::New {
                new: &new,
                old: &old,
            },
        );
        assert!(!d["admin"].contains_key("WEBHOOK"));
        assert_eq!(
            d["creds"].keys().collect::<Vec<_>>(),
            ["PREV", "SID", "TOKEN", "WEBHOOK"]
        );
    }
}

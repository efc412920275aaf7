//! The Twilio side of an API key rotation: each function is one step, safe to repeat.
//!
//! Keys are created through the 2010 API (standard keys) or IAM v1 (restricted keys, with a
//! policy), and listed, inspected and deleted through IAM v1, which covers every key type.
//! Every key gets a friendly name naming the resource and the rotation, so a key created by a
//! step that crashed before storing its secret can be found and deleted.

use super::failure;
use crate::rotation::{Failure, FailureClass};
use crate::secret::Credential;
use crate::twilio::{Credentials, ErrorKind, TwilioClient, MAX_FRIENDLY_NAME_CHARS};

/// Length of a rotation ID (`20261123-101500-1a2b`).
const ROTATION_ID_CHARS: usize = 20;

/// The friendly name of the key a rotation creates: `{prefix}:{namespace}/{name}:{rotation}`.
/// A resource path too long for Twilio's 64 characters is cut and suffixed with a hash of the
/// resource UID, so the name stays unique and the same on every attempt.
pub fn friendly_name(
    prefix: &str,
    namespace: &str,
    name: &str,
    uid: &str,
    rotation: &str,
) -> String {
    let prefix: String = prefix.chars().take(20).collect();
    let rotation: String = rotation.chars().take(ROTATION_ID_CHARS).collect();
    let room = MAX_FRIENDLY_NAME_CHARS - prefix.chars().count() - rotation.chars().count() - 2;
    let resource = format!("{namespace}/{name}");
    let resource = if resource.chars().count() <= room {
        resource
    } else {
        let tag = format!("~{:08x}", crate::hash::fnv1a32(uid.bytes()));
        let keep = room - tag.len();
        let cut: String = resource.chars().take(keep).collect();
        format!("{cut}{tag}")
    };
    format!("{prefix}:{resource}:{rotation}")
}

/// Maps an authentication failure of the operator's own credential: a key that authenticates
/// (its balance is readable) but may not manage keys is a Standard or restricted key.
async fn operator_refused(
    client: &TwilioClient,
    operator: &Credentials,
    err: &crate::twilio::TwilioError,
) -> Failure {
    if err.kind() != ErrorKind::AuthenticationFailed || !operator.is_api_key() {
        return failure(err, FailureClass::AuthenticationFailed);
    }
    let authenticates = match client.fetch_balance(operator).await {
        Ok(()) => true,
        Err(e) => e.status() == Some(403),
    };
    if authenticates {
        Failure {
            class: FailureClass::StandardKeyCredentials,
            message: format!(
                "the credentials Secret holds API key {}, which authenticates but may not manage keys: Twilio lets only the Auth Token or a Main key create and delete keys (this one is a Standard or restricted key)",
                operator.username()
            ),
        }
    } else {
        failure(err, FailureClass::AuthenticationFailed)
    }
}

/// The policy of the key being rotated, if it is a restricted key, so its successor gets the
/// same permissions.
pub async fn policy_of(
    client: &TwilioClient,
    operator: &Credentials,
    key_sid: &str,
) -> Result<Option<serde_json::Value>, Failure> {
    match client.iam_fetch_api_key(operator, key_sid).await {
        Ok(k) => Ok(k.policy.filter(|p| p.is_object())),
        // The key the Secrets hold no longer exists: nothing to inherit.
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(operator_refused(client, operator, &e).await),
    }
}

/// Deletes every key named `name`: keys an earlier attempt of this step created but never
/// stored (their secret is lost), or, on abort, the rotation's unused new key.
pub async fn delete_named(
    client: &TwilioClient,
    operator: &Credentials,
    name: &str,
) -> Result<(), Failure> {
    let keys = match client.iam_list_api_keys(operator).await {
        Ok(k) => k,
        Err(e) => return Err(operator_refused(client, operator, &e).await),
    };
    for k in keys
        .iter()
        .filter(|k| k.friendly_name.as_deref() == Some(name))
    {
        delete(client, operator, &k.sid).await?;
        tracing::info!(key = %k.sid, "deleted an API key no rotation had stored");
    }
    Ok(())
}

/// Stage: delete this rotation's orphans, then create the new key (restricted when `policy`
/// is set). The caller stores it before anything else happens.
pub async fn create(
    client: &TwilioClient,
    operator: &Credentials,
    name: &str,
    policy: Option<&serde_json::Value>,
) -> Result<Credential, Failure> {
    delete_named(client, operator, name).await?;
    let created = match policy {
        Some(p) => client.iam_create_api_key(operator, name, Some(p)).await,
        None => client.create_api_key(operator, name).await,
    };
    match created {
        Ok(k) => Ok(Credential {
            key_sid: Some(k.sid),
            secret: k.secret,
        }),
        Err(e) => Err(operator_refused(client, operator, &e).await),
    }
}

/// The operator's credential (the Auth Token or a Main key) authenticates for the account.
pub async fn authenticates(client: &TwilioClient, operator: &Credentials) -> Result<(), Failure> {
    match client.fetch_balance(operator).await {
        Ok(()) => Ok(()),
        Err(e) => Err(failure(&e, FailureClass::AuthenticationFailed)),
    }
}

/// Verify: the new key authenticates. Its permissions are the policy's business, so a 403
/// (authenticated, not allowed to read the balance) also passes.
pub async fn verify(client: &TwilioClient, new: &Credentials) -> Result<(), Failure> {
    match client.fetch_balance(new).await {
        Ok(()) => Ok(()),
        Err(e) if e.status() == Some(403) => Ok(()),
        Err(e) => Err(failure(&e, FailureClass::NewTokenRefused)),
    }
}

/// Deletes one key; already gone is fine.
pub async fn delete(
    client: &TwilioClient,
    operator: &Credentials,
    key_sid: &str,
) -> Result<(), Failure> {
    match client.iam_delete_api_key(operator, key_sid).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(operator_refused(client, operator, &e).await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "20261123-101500-1a2b";

    #[test]
    fn friendly_name_names_resource_and_rotation() {
        assert_eq!(
            friendly_name("token-rotator", "shop", "twilio", "uid", ID),
            "token-rotator:shop/twilio:20261123-101500-1a2b"
        );
    }

    #[test]
    fn long_resources_are_cut_to_twilios_limit_and_stay_distinct() {
        let long = "a".repeat(200);
        let a = friendly_name("token-rotator", "shop", &long, "uid-a", ID);
        let b = friendly_name("token-rotator", "shop", &long, "uid-b", ID);
        assert_eq!(a.chars().count(), MAX_FRIENDLY_NAME_CHARS);
        assert!(a.starts_with("token-rotator:shop/aaa"), "{a}");
        assert!(a.ends_with(ID), "{a}");
        assert_ne!(
            a, b,
            "two resources sharing a long prefix get distinct names"
        );
        // The same inputs give the same name on every attempt: that is how orphans are found.
        assert_eq!(
            a,
            friendly_name("token-rotator", "shop", &long, "uid-a", ID)
        );
        let max_prefix = "p".repeat(20);
        assert!(
            friendly_name(&max_prefix, &long, &long, "u", ID)
                .chars()
                .count()
                <= 64
        );
    }
}

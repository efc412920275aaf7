//! What a reconcile does: the one action the decision chose, with the Kubernetes and Twilio
//! I/O it takes. Each per-kind difference goes through an exhaustive match on the
//! [`CredentialKind`].

use super::locks::Replaces;
use super::secrets::{self, Credential, Distribution, Pair, Staged};
use super::subject::Subject;
use super::Context;
use crate::api::WorkloadRef;
use crate::providers::{api_key, auth_token, CredentialKind};
use crate::rotation::{Action, Failure, FailureClass, Observation, Serve};
use crate::secret::SecretString;
use crate::twilio::{Credentials, TwilioClient};
use crate::workloads;
use std::collections::BTreeSet;
use std::time::Duration;

fn kube_failure(what: &str, e: kube::Error) -> Failure {
    let class = match &e {
        kube::Error::Api(s) if s.code == 403 => FailureClass::Forbidden,
        _ => FailureClass::Kubernetes,
    };
    Failure {
        class,
        message: format!("{what}: {}", crate::kube_errors::describe(&e)),
    }
}

fn twilio_client(ctx: &Context, tr: &Subject) -> Result<TwilioClient, Failure> {
    let suppress = tr
        .spec
        .auth_token
        .as_ref()
        .and_then(|a| a.suppress_email_notification)
        .unwrap_or(true);
    ctx.twilio(
        tr.spec.twilio.region.as_deref(),
        tr.spec.twilio.edge.as_deref(),
        suppress,
    )
    .map_err(|e| Failure {
        class: FailureClass::TwilioRejected,
        message: format!("building the Twilio client: {e}"),
    })
}

/// The token the operator authenticates with, from `credentialsSecretRef`.
async fn operator_token(ctx: &Context, tr: &Subject) -> Result<SecretString, Failure> {
    let r = &tr.spec.twilio.credentials_secret_ref;
    let [token] = read_required(ctx, &tr.home, &r.name, [&r.key]).await?;
    Ok(token)
}

/// Keys of the credentials Secret, each of which must be there and not empty.
async fn read_required<const N: usize>(
    ctx: &Context,
    ns: &str,
    name: &str,
    keys: [&str; N],
) -> Result<[SecretString; N], Failure> {
    let values = secrets::read_keys(&ctx.client, ns, name, keys)
        .await
        .map_err(|e| kube_failure("reading the credentials Secret", e))?;
    if let Some(i) = values
        .iter()
        .position(|v| v.as_ref().is_none_or(SecretString::is_empty))
    {
        return Err(Failure {
            class: FailureClass::CredentialsMissing,
            message: format!(
                "Secret {ns}/{name} does not exist or has no key {:?}",
                keys[i]
            ),
        });
    }
    Ok(values.map(Option::unwrap_or_default))
}

/// The credential the operator manages API keys with: the Auth Token, or a Main key when
/// `keySidKey` names its SID.
async fn operator_credentials(ctx: &Context, tr: &Subject) -> Result<Credentials, Failure> {
    let sid = tr.spec.twilio.account_sid.as_str();
    let r = &tr.spec.twilio.credentials_secret_ref;
    match &r.key_sid_key {
        None => {
            let [secret] = read_required(ctx, &tr.home, &r.name, [&r.key]).await?;
            Ok(Credentials::auth_token(sid, secret))
        }
        Some(k) => {
            let [secret, key_sid] = read_required(ctx, &tr.home, &r.name, [&r.key, k]).await?;
            Ok(Credentials::api_key(sid, key_sid.expose(), secret))
        }
    }
}

/// The API key the target Secrets hold now (the first Secret's, in the first target
/// namespace), if any: the key a rotation replaces.
async fn current_key(ctx: &Context, tr: &Subject) -> Result<Option<Credential>, Failure> {
    let (Some(t), Some(ns)) = (tr.spec.secrets.first(), tr.targets.first()) else {
        return Ok(None);
    };
    let Some(sid_key) = &t.key_sid_key else {
        return Ok(None);
    };
    let [sid, secret] = secrets::read_keys(&ctx.client, ns, &t.name, [sid_key, &t.token_key])
        .await
        .map_err(|e| kube_failure("reading the current API key", e))?;
    Ok(match (sid, secret) {
        (Some(sid), Some(secret)) if sid.expose().starts_with("SK") && !secret.is_empty() => {
            Some(Credential {
                key_sid: Some(sid.expose().to_owned()),
                secret,
            })
        }
        _ => None,
    })
}

/// The key an API key rotation starting now replaces: the one its target Secrets hold (read
/// now), else the one status names; `Unknown` when neither tells (then it takes turns with every
/// other key rotation of the account).
pub(super) async fn replaced_key(
    ctx: &Context,
    tr: &Subject,
    status: Option<&crate::api::TokenRotationStatus>,
) -> Replaces {
    if CredentialKind::of(&tr.spec) != Some(CredentialKind::ApiKey) {
        return Replaces::Nothing;
    }
    let sid_key = tr.spec.secrets.first().and_then(|t| t.key_sid_key.as_ref());
    match (sid_key, current_key(ctx, tr).await) {
        (
            Some(_),
            Ok(Some(Credential {
                key_sid: Some(sid), ..
            })),
        ) => Replaces::Key(sid),
        // The Secret holds no key yet: the rotation makes the first one.
        (Some(_), Ok(None)) => Replaces::Nothing,
        _ => Replaces::from_status(status),
    }
}

/// The friendly name of the key this rotation creates.
fn key_name(tr: &Subject, obs: &Observation) -> String {
    let prefix = tr
        .spec
        .api_key
        .as_ref()
        .map(|k| k.friendly_name_prefix.as_str())
        .unwrap_or("token-rotator");
    let id = obs.status.rotation.as_ref().map(|r| r.id.as_str());
    // A cluster rotation is named like a resource in no namespace.
    let ns = if tr.cluster { "" } else { tr.home.as_str() };
    api_key::friendly_name(prefix, ns, &tr.name, &obs.uid, id.unwrap_or_default())
}

fn key_credentials(tr: &Subject, c: &Credential) -> Credentials {
    let sid = tr.spec.twilio.account_sid.as_str();
    match &c.key_sid {
        Some(k) => Credentials::api_key(sid, k.as_str(), c.secret.clone()),
        None => Credentials::auth_token(sid, c.secret.clone()),
    }
}

/// The current rotation's credentials, from its staging Secret as the observation read it
/// (this reconcile, just before deciding).
fn staged(obs: &Observation, staging: Option<&Staged>, tr: &Subject) -> Result<Pair, Failure> {
    let ns = tr.home.as_str();
    let Some(r) = &obs.status.rotation else {
        return Err(Failure {
            class: FailureClass::StagingLost,
            message: "no rotation in flight".into(),
        });
    };
    match staging {
        Some(s) if s.rotation_id == r.id => Ok(Pair {
            new: s.new.clone(),
            previous: s.previous.clone(),
        }),
        _ => Err(Failure {
            class: FailureClass::StagingLost,
            message: format!(
                "the staging Secret {ns}/{} holding rotation {}'s tokens is missing",
                r.staging_secret, r.id
            ),
        }),
    }
}

/// Applies what `d` asks for into the target Secrets of every target namespace and, for Auth
/// Token rotation, the credentials Secret.
async fn distribute(
    ctx: &Context,
    tr: &Subject,
    kind: CredentialKind,
    d: Distribution<'_>,
) -> Result<(), Failure> {
    let mut namespaces = tr.targets.clone();
    if !namespaces.contains(&tr.home) {
        namespaces.push(tr.home.clone());
    }
    for ns in &namespaces {
        let (targets, credentials) = (tr.targets.contains(ns), *ns == tr.home);
        for (name, data) in secrets::desired(&tr.spec, kind, d, targets, credentials) {
            match secrets::apply(&ctx.client, &tr.field_manager, ns, &name, &data).await {
                Ok(()) => {}
                // A namespace being deleted takes no new Secret, and nobody there will read it.
                Err(e) if secrets::namespace_terminating(&e) => {
                    tracing::info!(namespace = %ns, secret = %name, "namespace is being deleted; not writing there");
                }
                Err(e) => return Err(kube_failure(&format!("applying Secret {ns}/{name}"), e)),
            }
        }
    }
    Ok(())
}

/// Whether a target Secret in one of `namespaces` does not hold `expected` yet (compared in
/// memory).
async fn lacking(
    ctx: &Context,
    tr: &Subject,
    namespaces: &BTreeSet<&str>,
    expected: &SecretString,
) -> Result<bool, Failure> {
    let mut wanted: Vec<(&str, &str, &str)> = Vec::new();
    for ns in namespaces {
        for t in &tr.spec.secrets {
            wanted.push((ns, &t.name, &t.token_key));
        }
    }
    secrets::lacking(&ctx.client, &tr.field_manager, wanted, expected, true)
        .await
        .map(|missing| !missing.is_empty())
        .map_err(|(secret, e)| kube_failure(&format!("reading Secret {secret}"), e))
}

pub(super) async fn execute(
    ctx: &Context,
    tr: &Subject,
    obs: &Observation,
    staging: Option<&Staged>,
    action: &Action,
) -> Result<(), Failure> {
    // A decision acts only on a valid plan; an invalid one decides Action::None.
    let kind = match (&obs.plan, action) {
        (_, Action::None) => return Ok(()),
        (Ok(plan), _) => plan.credential,
        (Err(e), _) => {
            return Err(Failure {
                class: FailureClass::TwilioRejected,
                message: e.to_string(),
            })
        }
    };
    match action {
        Action::None => Ok(()),
        Action::Stage { clear_existing } => {
            // Nothing is created unless every write the rotation needs is allowed.
            if !ctx.config.safety.skip_permission_preflight {
                super::permissions::preflight(ctx, tr).await?;
            }
            let staged = match kind {
                CredentialKind::AuthToken => {
                    let clear = *clear_existing || ctx.config.safety.skip_foreign_secondary_check;
                    stage_auth_token(ctx, tr, clear).await?
                }
                CredentialKind::ApiKey => stage_api_key(ctx, tr, obs).await?,
            };
            ctx.config.failpoints.hit("stage:created").await;
            store_staged(ctx, tr, obs, staged).await
        }
        Action::Distribute => {
            let s = staged(obs, staging, tr)?;
            distribute(
                ctx,
                tr,
                kind,
                Distribution::New {
                    new: &s.new,
                    old: s.previous.as_ref(),
                },
            )
            .await
        }
        Action::Restart {
            stamp,
            workloads: refs,
            serve,
        } => {
            if tr.cluster {
                // A namespace may have started matching since distribution: its Secret gets
                // the credential the restarted pods must read before they restart.
                let namespaces: BTreeSet<&str> =
                    refs.iter().map(|w| w.namespace.as_str()).collect();
                let fresh = match serve {
                    Serve::Old => {
                        let old = old_credential(ctx, tr, obs, staging, kind).await?;
                        let fresh = match &old {
                            Some(old) => lacking(ctx, tr, &namespaces, &old.secret).await?,
                            None => false,
                        };
                        let d = Distribution::Restore { old: old.as_ref() };
                        distribute(ctx, tr, kind, d).await?;
                        fresh
                    }
                    Serve::New => {
                        let s = staged(obs, staging, tr)?;
                        let fresh = lacking(ctx, tr, &namespaces, &s.new.secret).await?;
                        let d = Distribution::New {
                            new: &s.new,
                            old: s.previous.as_ref(),
                        };
                        distribute(ctx, tr, kind, d).await?;
                        fresh
                    }
                };
                if fresh {
                    // Just written: like after the Distribute step, let it settle before the
                    // pods restart (a kubelet's Secret cache can still hand them the value
                    // before).
                    tokio::time::sleep(crate::rotation::SETTLE).await;
                }
            }
            for w in refs {
                let r = WorkloadRef {
                    kind: w.kind,
                    name: w.name.clone(),
                };
                let by = workloads::Stamper {
                    key: &tr.stamp_key,
                    field_manager: &tr.field_manager,
                };
                match workloads::stamp(&ctx.client, &w.namespace, &r, by, stamp).await {
                    Ok(written) => {
                        if let Some(written) = written {
                            ctx.workloads.wrote(&w.namespace, written);
                        }
                    }
                    // Deleted meanwhile: nothing of it runs to restart.
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(kube_failure(&format!("restarting {w}"), e)),
                }
            }
            Ok(())
        }
        Action::RestartRollouts { rollouts } => {
            for (ns, name) in rollouts {
                match super::pods::restart_rollout(ctx, tr, ns, name).await {
                    Ok(()) => {}
                    // Deleted meanwhile: nothing of it runs to restart.
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => {
                        return Err(kube_failure(&format!("restarting Rollout {ns}/{name}"), e))
                    }
                }
            }
            Ok(())
        }
        Action::DeletePods { pods } => {
            for p in pods {
                match super::pods::delete(ctx, p).await {
                    Ok(()) => {}
                    Err(e) => {
                        return Err(kube_failure(
                            &format!("deleting pod {}/{}", p.namespace, p.name),
                            e,
                        ))
                    }
                }
            }
            Ok(())
        }
        Action::Verify => {
            let s = staged(obs, staging, tr)?;
            let twilio = twilio_client(ctx, tr)?;
            let new = key_credentials(tr, &s.new);
            match kind {
                CredentialKind::AuthToken => auth_token::verify(&twilio, &new).await,
                CredentialKind::ApiKey => api_key::verify(&twilio, &new).await,
            }
        }
        Action::Promote => match kind {
            CredentialKind::AuthToken => promote_auth_token(ctx, tr, obs, staging).await,
            // Never decided: an API key has nothing to promote.
            CredentialKind::ApiKey => Ok(()),
        },
        Action::Retire { delete_keys } => {
            // The Secrets get the rotation's own new credential alone, from the staging
            // Secret (never whatever the credentials Secret holds by now: another writer may
            // have put a dead token there). The staging Secret goes last, so it is gone only if
            // an earlier attempt of this step already wrote the Secrets; a repeat then deletes
            // the same keys again (already gone is fine).
            match staged(obs, staging, tr) {
                Ok(s) => distribute(ctx, tr, kind, Distribution::Final { new: &s.new }).await?,
                Err(f) if f.class == FailureClass::StagingLost => {}
                Err(f) => return Err(f),
            }
            match kind {
                // The old token died at promotion: nothing left at Twilio.
                CredentialKind::AuthToken => {}
                CredentialKind::ApiKey => {
                    let op = operator_credentials(ctx, tr).await?;
                    let twilio = twilio_client(ctx, tr)?;
                    // Never the Main key the operator itself manages keys with.
                    for k in delete_keys.iter().filter(|k| k.as_str() != op.username()) {
                        api_key::delete(&twilio, &op, k).await?;
                    }
                }
            }
            delete_staging(ctx, obs, tr).await
        }
        Action::RestoreSecrets => {
            let old = old_credential(ctx, tr, obs, staging, kind).await?;
            distribute(ctx, tr, kind, Distribution::Restore { old: old.as_ref() }).await
        }
        Action::CheckCredentials => {
            let op = operator_credentials(ctx, tr).await?;
            let twilio = twilio_client(ctx, tr)?;
            match kind {
                CredentialKind::AuthToken => auth_token::primary(&twilio, &op).await.map(|_| ()),
                CredentialKind::ApiKey => api_key::authenticates(&twilio, &op).await,
            }
        }
        Action::Recover => {
            let s = match kind {
                CredentialKind::AuthToken => recover_auth_token(ctx, tr).await?,
                CredentialKind::ApiKey => recover_api_key(ctx, tr, obs).await?,
            };
            store_staged(ctx, tr, obs, s).await
        }
        Action::DeleteSecondary { at_twilio: false } => delete_staging(ctx, obs, tr).await,
        Action::DeleteSecondary { at_twilio: true } => {
            let twilio = twilio_client(ctx, tr)?;
            match kind {
                CredentialKind::AuthToken => {
                    // Before promotion the old token is the primary: the staging Secret's
                    // copy still works when the credentials Secret is gone (a namespace being
                    // deleted).
                    let op = match staged(obs, staging, tr) {
                        Ok(Pair {
                            previous: Some(old),
                            ..
                        }) => key_credentials(tr, &old),
                        _ => operator_credentials(ctx, tr).await?,
                    };
                    auth_token::delete_secondary(&twilio, &op).await?;
                }
                CredentialKind::ApiKey => {
                    let op = operator_credentials(ctx, tr).await?;
                    api_key::delete_named(&twilio, &op, &key_name(tr, obs)).await?;
                }
            }
            delete_staging(ctx, obs, tr).await
        }
    }
}

/// Stage for an Auth Token: the operator's token is the old one.
async fn stage_auth_token(
    ctx: &Context,
    tr: &Subject,
    clear_existing: bool,
) -> Result<Pair, Failure> {
    let old = operator_token(ctx, tr).await?;
    let twilio = twilio_client(ctx, tr)?;
    let creds = Credentials::auth_token(&tr.spec.twilio.account_sid, old.clone());
    let new = auth_token::create_secondary(&twilio, &creds, clear_existing).await?;
    Ok(Pair {
        new: Credential::auth_token(new),
        previous: Some(Credential::auth_token(old)),
    })
}

/// Promote, then re-apply the Secrets: Twilio now signs webhooks with the new token, so it goes
/// first in the webhook key. Both tokens were there since distribution, so validators never
/// missed the signer; if the write fails the step is repeated, which confirms the promotion and
/// writes again.
async fn promote_auth_token(
    ctx: &Context,
    tr: &Subject,
    obs: &Observation,
    staging: Option<&Staged>,
) -> Result<(), Failure> {
    let s = staged(obs, staging, tr)?;
    let Some(old) = &s.previous else {
        return Err(Failure {
            class: FailureClass::StagingLost,
            message: "the staging Secret lacks the previous Auth Token".into(),
        });
    };
    let twilio = twilio_client(ctx, tr)?;
    auth_token::promote(
        &twilio,
        &key_credentials(tr, &s.new),
        &key_credentials(tr, old),
    )
    .await?;
    let d = Distribution::Promoted {
        new: &s.new,
        old: Some(old),
    };
    distribute(ctx, tr, CredentialKind::AuthToken, d).await
}

/// The credential an abort restores: the staging Secret's previous one; for an Auth Token whose
/// staging Secret is gone, the account's primary (the old token until promotion), as Twilio
/// names it to whoever authenticates.
async fn old_credential(
    ctx: &Context,
    tr: &Subject,
    obs: &Observation,
    staging: Option<&Staged>,
    kind: CredentialKind,
) -> Result<Option<Credential>, Failure> {
    match (staged(obs, staging, tr), kind) {
        (Ok(s), _) => Ok(s.previous),
        (Err(f), CredentialKind::AuthToken) if f.class == FailureClass::StagingLost => {
            let op = operator_credentials(ctx, tr).await?;
            let twilio = twilio_client(ctx, tr)?;
            match auth_token::primary(&twilio, &op).await? {
                Some(primary) => Ok(Some(Credential::auth_token(primary))),
                None => Err(f),
            }
        }
        // The previous key's secret was only ever in the staging Secret.
        (Err(f), CredentialKind::AuthToken | CredentialKind::ApiKey) => Err(f),
    }
}

/// The staging Secret of an Auth Token rotation, rebuilt after distribution: the credentials
/// Secret holds the new token since then, and Twilio names the primary (the old token until
/// promotion) to anyone who authenticates.
async fn recover_auth_token(ctx: &Context, tr: &Subject) -> Result<Pair, Failure> {
    let held = operator_token(ctx, tr).await?;
    let twilio = twilio_client(ctx, tr)?;
    let creds = Credentials::auth_token(&tr.spec.twilio.account_sid, held.clone());
    let lost = |why: &str| {
        Failure {
        class: FailureClass::StagingLost,
        message: format!("the staging Secret was deleted and cannot be rebuilt: {why}; set tokenrotator.io/abort to roll back"),
    }
    };
    let Some(primary) = auth_token::primary(&twilio, &creds).await? else {
        return Err(lost(
            "Twilio did not return the account's primary Auth Token",
        ));
    };
    if primary == held {
        return Err(lost(
            "the credentials Secret holds the primary Auth Token, not the new one",
        ));
    }
    Ok(Pair {
        new: Credential::auth_token(held),
        previous: Some(Credential::auth_token(primary)),
    })
}

/// The staging Secret of an API key rotation, rebuilt after distribution from the first target
/// Secret, when it holds the key this rotation made (its SID is in status). The previous key's
/// secret is gone with it: the rotation can only go forward.
async fn recover_api_key(ctx: &Context, tr: &Subject, obs: &Observation) -> Result<Pair, Failure> {
    let want = obs.status.rotation.as_ref().and_then(|r| r.key_sid.clone());
    let held = current_key(ctx, tr).await?;
    match (want, held) {
        (Some(want), Some(held)) if held.key_sid.as_deref() == Some(want.as_str()) => Ok(Pair {
            new: held,
            previous: None,
        }),
        _ => Err(Failure {
            class: FailureClass::StagingLost,
            message: "the staging Secret was deleted and the target Secrets no longer hold this rotation's new API key, so it cannot be rebuilt".into(),
        }),
    }
}

/// Stage for an API key: the key the Secrets hold now is the one replaced; a restricted key's
/// successor gets the spec's policy, or else the policy of the key it replaces.
async fn stage_api_key(ctx: &Context, tr: &Subject, obs: &Observation) -> Result<Pair, Failure> {
    let op = operator_credentials(ctx, tr).await?;
    let twilio = twilio_client(ctx, tr)?;
    let previous = current_key(ctx, tr).await?;
    let policy = match tr.spec.api_key.as_ref().and_then(|k| k.policy.clone()) {
        Some(p) => Some(p),
        None => match previous.as_ref().and_then(|p| p.key_sid.as_deref()) {
            Some(k) => api_key::policy_of(&twilio, &op, k).await?,
            None => None,
        },
    };
    let new = api_key::create(&twilio, &op, &key_name(tr, obs), policy.as_ref()).await?;
    Ok(Pair { new, previous })
}

/// The new credential exists only in this process now: insist on storing it.
async fn store_staged(
    ctx: &Context,
    tr: &Subject,
    obs: &Observation,
    pair: Pair,
) -> Result<(), Failure> {
    let Some(r) = &obs.status.rotation else {
        return Err(Failure {
            class: FailureClass::StagingLost,
            message: "no rotation in flight".into(),
        });
    };
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=6 {
        match secrets::write_staging(
            &ctx.client,
            &tr.field_manager,
            &tr.home,
            tr.owner.as_ref(),
            &r.staging_secret,
            &r.id,
            &pair,
        )
        .await
        {
            Ok(version) => {
                ctx.staging.saw(&tr.home, &r.staging_secret, version);
                return Ok(());
            }
            Err(e) if attempt < 6 => {
                tracing::warn!(attempt, error = %e, "storing the new credential failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => {
                return Err(kube_failure(
                    "storing the new credential in the staging Secret",
                    e,
                ))
            }
        }
    }
    Ok(())
}

async fn delete_staging(ctx: &Context, obs: &Observation, tr: &Subject) -> Result<(), Failure> {
    if let Some(r) = &obs.status.rotation {
        // Whatever happens next, the cached version is no longer ours to trust.
        ctx.staging.saw(&tr.home, &r.staging_secret, None);
        secrets::delete(&ctx.client, &tr.home, &r.staging_secret)
            .await
            .map_err(|e| kube_failure("deleting the staging Secret", e))?;
    }
    Ok(())
}

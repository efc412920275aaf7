//! Copies of the credential being replaced in Secrets the rotation does not write: another
//! app's Secret, a hand-made copy, one synced from elsewhere. Promotion would break whatever
//! reads them, so the rotation holds before it while one exists.
//!
//! Read with paged, uncached LISTs (small pages: Secret data is held one page at a time, so
//! memory stays flat however many Secrets exist) in the namespaces the rotation writes. Values
//! are compared by a keyed hash (SipHash with a random key per scan), so no digest that could
//! be matched elsewhere is ever kept; only namespace, name and key reach the result.

use super::subject::Subject;
use crate::api::{CopyRef, STAGING_LABEL};
use crate::rotation::TokenCopy;
use crate::secret::SecretString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use kube::Client;
use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};

/// Secrets per LIST page: the data of at most this many is in memory at once.
const PAGE: u32 = 25;
/// A value longer than this is not a copy of a token (tokens are 32 characters).
const MAX_VALUE: usize = 4096;

fn keyed(state: &std::collections::hash_map::RandomState, v: &[u8]) -> u64 {
    let mut h = state.build_hasher();
    h.write(v);
    h.finish()
}

/// Every key of a Secret in scope, other than the rotation's own, whose value is `old` (also
/// with surrounding whitespace, as a file written by `echo` has).
pub(super) async fn scan(
    client: &Client,
    tr: &Subject,
    old: &SecretString,
    except: &[CopyRef],
) -> Result<Vec<TokenCopy>, kube::Error> {
    let state = std::collections::hash_map::RandomState::new();
    let wanted = keyed(&state, old.expose().trim().as_bytes());
    let targets: BTreeSet<&str> = tr.spec.secrets.iter().map(|s| s.name.as_str()).collect();
    let credentials = &tr.spec.twilio.credentials_secret_ref.name;
    let mut namespaces: BTreeSet<&String> = tr.targets.iter().collect();
    namespaces.insert(&tr.home);
    let mut out = Vec::new();
    for ns in namespaces {
        let ours = |name: &str| {
            (tr.targets.contains(ns) && targets.contains(name))
                || (ns == &tr.home && name == credentials)
        };
        let excepted = |name: &str, key: &str| {
            except.iter().any(|e| {
                e.namespace.as_ref().is_none_or(|n| n == ns)
                    && e.name == name
                    && e.key.as_deref().is_none_or(|k| k == key)
            })
        };
        let api: Api<Secret> = Api::namespaced(client.clone(), ns);
        let mut lp = ListParams::default().limit(PAGE);
        loop {
            let page = api.list(&lp).await?;
            for s in &page.items {
                let name = s.metadata.name.as_deref().unwrap_or_default();
                let staging = s
                    .metadata
                    .labels
                    .as_ref()
                    .is_some_and(|l| l.contains_key(STAGING_LABEL));
                if ours(name) || staging {
                    continue;
                }
                for (key, value) in s.data.iter().flatten() {
                    let v = &value.0;
                    if v.len() > MAX_VALUE || excepted(name, key) {
                        continue;
                    }
                    if keyed(&state, v.trim_ascii()) == wanted {
                        out.push(TokenCopy {
                            namespace: ns.clone(),
                            secret: name.to_owned(),
                            key: key.clone(),
                        });
                    }
                }
            }
            match page.metadata.continue_ {
                Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
                _ => break,
            }
        }
    }
    tracing::debug!(
        copies = out.len(),
        "copies of the old credential outside the rotation"
    );
    Ok(out)
}

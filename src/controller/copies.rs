//! Copies of the credential being replaced in Secrets the rotation does not write: another
//! app's Secret, a hand-made copy, one synced from elsewhere. Promotion would break whatever
//! reads them, so the rotation holds before it while one exists.
//!
//! Read with paged, uncached LISTs in the namespaces the rotation writes, each page's text
//! read with its long strings cut short, then parsed ([`super::listed_secrets`]): a few KiB
//! per Secret however large its values. Values are compared by a keyed hash; only namespace,
//! name and key reach the result. Helm's release Secrets (each revision of each release, up to 1 MiB of compressed
//! manifest) are left out by the API server: their value is never a token.

use super::listed_secrets::{self, Wanted};
use super::subject::Subject;
use crate::api::CopyRef;
use crate::rotation::TokenCopy;
use crate::secret::SecretString;
use kube::api::ListParams;
use kube::Client;
use std::collections::BTreeSet;

/// Secrets per LIST page (the default chunk of kubectl and client-go's pagers).
const PAGE: u32 = 500;
/// What the LIST leaves out: Secrets whose value is never a token.
const NOT_TOKENS: &str = "type!=helm.sh/release.v1";

/// Every key of a Secret in scope, other than the rotation's own, whose value is `old` (also
/// with surrounding whitespace, as a file written by `echo` has).
pub(super) async fn scan(
    client: &Client,
    tr: &Subject,
    old: &SecretString,
    except: &[CopyRef],
) -> Result<Vec<TokenCopy>, kube::Error> {
    let wanted = Wanted::new(old);
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
        let mut lp = ListParams::default().limit(PAGE).fields(NOT_TOKENS);
        loop {
            let page = listed_secrets::list(client, ns, &lp, &wanted).await?;
            for h in page.holders {
                if ours(&h.name) || h.staging {
                    continue;
                }
                for key in h.keys {
                    if !excepted(&h.name, &key) {
                        out.push(TokenCopy {
                            namespace: ns.clone(),
                            secret: h.name.clone(),
                            key,
                        });
                    }
                }
            }
            match page.next {
                Some(c) => lp = lp.continue_token(&c),
                None => break,
            }
        }
    }
    tracing::debug!(
        copies = out.len(),
        "copies of the old credential outside the rotation"
    );
    Ok(out)
}

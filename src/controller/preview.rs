//! `token-rotator plan`: what a rotation of a resource would do if it started now, read-only.
//! It resolves the resource as a reconcile does ([`Subject`]), finds consumers with the same
//! functions the controller's observation uses (dependent workloads, the consumer pods and
//! their owners, the copy scan) and judges them with the same pure barrier, so the plan and the
//! controller cannot disagree about a world that does not change in between.

use super::copies;
use super::pods::{self, Dependent};
use super::secrets;
use super::subject::{Rotated, Subject};
use crate::api::{CopiesPolicy, RestartPolicy, UnmanagedPods};
use crate::providers::CredentialKind;
use crate::rotation::consumers::{self, Waiting};
use crate::rotation::{Plan, TokenCopy};
use crate::workloads;
use chrono::Utc;
use kube::Client;
use std::collections::BTreeSet;
use std::fmt::Write;

/// What a rotation would do now. Every field is names and counts, never a credential.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    pub resource: String,
    pub credential: &'static str,
    pub account: String,
    /// The rotation in flight (its ID and phase), if any.
    pub in_flight: Option<(String, String)>,
    /// Target Secrets: namespace, name, and whether the rotation would create it.
    pub targets: Vec<(String, String, bool)>,
    /// Dependent workloads it would restart by the pod-template stamp.
    pub restarts: Vec<String>,
    /// Named workloads that do not exist.
    pub missing: Vec<String>,
    /// Consumer pods by what would happen to them: (what, summary line).
    pub pods: Vec<(Waiting, String)>,
    pub consumer_pods: usize,
    pub unmanaged_policy: UnmanagedPods,
    pub copies: Vec<TokenCopy>,
    /// Copies were not looked for, and why.
    pub copies_skipped: Option<&'static str>,
    /// Other resources rotating the same account.
    pub claimants: Vec<String>,
    /// Why it would hold (reason: message), in the order the controller would meet them.
    pub holds: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("the spec is invalid: {0}")]
    Spec(String),
}

/// Builds the preview of `obj`; `others` are every resource of both kinds (for the account's
/// other claimants).
pub async fn preview<K: Rotated>(
    client: &Client,
    obj: &K,
    others: &[(String, crate::api::TokenRotationSpec, bool)],
) -> Result<Preview, PreviewError> {
    let now = Utc::now();
    let tr = Subject::of(client, obj).await?;
    let plan =
        Plan::new(obj.rotation_spec(), None).map_err(|e| PreviewError::Spec(e.to_string()))?;
    let credential = CredentialKind::of(&tr.spec);
    let mut p = Preview {
        resource: crate::cli::display_name(obj),
        credential: match credential {
            Some(CredentialKind::AuthToken) => "Auth Token",
            Some(CredentialKind::ApiKey) => "API key",
            None => "nothing (set authToken or apiKey)",
        },
        account: tr.spec.twilio.account_sid.clone(),
        in_flight: obj.rotation_status().and_then(|s| {
            let r = s.rotation.as_ref()?;
            Some((r.id.clone(), s.phase.map_or("", |p| p.as_str()).to_owned()))
        }),
        targets: Vec::new(),
        restarts: Vec::new(),
        missing: Vec::new(),
        pods: Vec::new(),
        consumer_pods: 0,
        unmanaged_policy: plan.unmanaged_pods,
        copies: Vec::new(),
        copies_skipped: None,
        claimants: Vec::new(),
        holds: Vec::new(),
    };
    for ns in &tr.targets {
        for t in &tr.spec.secrets {
            let exists =
                kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), ns)
                    .get_metadata_opt(&t.name)
                    .await?
                    .is_some();
            p.targets.push((ns.clone(), t.name.clone(), !exists));
        }
    }
    // Dependent workloads, as the rollout observation finds them.
    let names: BTreeSet<String> = tr.spec.secrets.iter().map(|s| s.name.clone()).collect();
    let mut dependents: BTreeSet<Dependent> = BTreeSet::new();
    for ns in &tr.targets {
        let all = workloads::list(client, ns).await?;
        let (deps, missing) = workloads::dependents(tr.spec.workloads.as_ref(), &names, &all);
        for w in &deps {
            dependents.insert((ns.clone(), w.kind, w.name.clone()));
            if plan.restart == RestartPolicy::Always {
                p.restarts.push(format!("{} {ns}/{}", w.kind, w.name));
            }
        }
        p.missing.extend(
            missing
                .iter()
                .map(|m| format!("{} {ns}/{}", m.kind, m.name)),
        );
    }
    // The consumer pods, judged as if the new credential were distributed now.
    let view = pods::observe(client, &tr, &dependents, None).await?;
    p.consumer_pods = view.pods.len();
    let old = consumers::old_pods(&view, consumers::Window::since(now), now, &plan);
    for what in [
        Waiting::Restarting,
        Waiting::JobRunning,
        Waiting::Draining,
        Waiting::Unmanaged,
    ] {
        let of_kind = old
            .iter()
            .filter(|(_, w)| *w == what)
            .map(|(p, w)| (*p, *w));
        let (groups, _) = consumers::group(of_kind);
        for g in groups {
            let line = format!(
                "{} {}/{} ({} pod{})",
                g.kind,
                g.namespace,
                g.name,
                g.pods,
                if g.pods == 1 { "" } else { "s" }
            );
            p.pods.push((what, line));
        }
    }
    if consumers::none_found(&view) {
        match (plan.restart, plan.no_consumers) {
            (RestartPolicy::Never, _) | (_, crate::api::NoConsumers::Proceed) => {}
            (RestartPolicy::Always, crate::api::NoConsumers::Hold) => p.holds.push(
                "NoConsumersFound: no Pod reads a target Secret and no dependent workload exists"
                    .into(),
            ),
        }
    }
    let unmanaged = old.iter().filter(|(_, w)| *w == Waiting::Unmanaged).count();
    if unmanaged > 0 && plan.unmanaged_pods == UnmanagedPods::Hold {
        p.holds.push(format!(
            "UnmanagedConsumers: {unmanaged} pods on the old credential that nothing this rotation restarts replaces"
        ));
    }
    // Copies of the credential in use now (the one a rotation would replace).
    let live = obj
        .rotation_spec()
        .uncovered_copies
        .clone()
        .unwrap_or_default();
    let current = match credential {
        Some(CredentialKind::AuthToken) => {
            let c = &tr.spec.twilio.credentials_secret_ref;
            let [v] = secrets::read_keys(client, &tr.home, &c.name, [c.key.as_str()]).await?;
            v
        }
        Some(CredentialKind::ApiKey) => match (tr.targets.first(), tr.spec.secrets.first()) {
            (Some(ns), Some(t)) => {
                let [v] = secrets::read_keys(client, ns, &t.name, [t.token_key.as_str()]).await?;
                v
            }
            _ => None,
        },
        None => None,
    };
    match (live.policy, current, plan.retain_previous > 0) {
        (CopiesPolicy::Ignore, _, _) => p.copies_skipped = Some("uncoveredCopies.policy: Ignore"),
        (_, _, true) => p.copies_skipped = Some("the previous API key is retained"),
        (CopiesPolicy::Hold, None, false) => {
            p.copies_skipped = Some("the current credential could not be read")
        }
        (CopiesPolicy::Hold, Some(old), false) => {
            p.copies = copies::scan(client, &tr, &old, &live.except).await?;
            if !p.copies.is_empty() {
                p.holds.push(format!(
                    "UncoveredTokenCopies: {} Secret keys outside the rotation hold the current credential",
                    p.copies.len()
                ));
            }
        }
    }
    // Other resources on the account.
    let me = crate::controller::locks::account_key(
        &tr.spec.twilio.account_sid,
        tr.spec.twilio.region.as_deref(),
    );
    let mine = credential.is_some_and(CredentialKind::one_owner_per_account);
    for (name, spec, in_flight) in others {
        let key = crate::controller::locks::account_key(
            &spec.twilio.account_sid,
            spec.twilio.region.as_deref(),
        );
        if key != me || *name == p.resource {
            continue;
        }
        let theirs = CredentialKind::of(spec);
        let what = match theirs {
            Some(CredentialKind::AuthToken) => "Auth Token",
            Some(CredentialKind::ApiKey) => "API key",
            None => "nothing",
        };
        let state = if *in_flight { ", rotating now" } else { "" };
        p.claimants.push(format!("{name} ({what}{state})"));
        if mine && theirs.is_some_and(CredentialKind::one_owner_per_account) {
            p.holds.push(format!(
                "AccountConflict: {name} also rotates this account's Auth Token"
            ));
        }
    }
    if obj.rotation_spec().suspend {
        p.holds.insert(0, "Suspended: spec.suspend is true".into());
    }
    Ok(p)
}

impl Preview {
    /// The plan as text, for people.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "{}: rotates the {} of account {}",
            self.resource, self.credential, self.account
        );
        if let Some((id, phase)) = &self.in_flight {
            let _ = writeln!(
                o,
                "A rotation is in flight ({id}, phase {phase}): this plan is for the next one."
            );
        }
        let _ = writeln!(o, "\nTarget Secrets (the new credential is written into):");
        for (ns, name, create) in &self.targets {
            let what = if *create { "create" } else { "update" };
            let _ = writeln!(o, "  {ns}/{name}: {what}");
        }
        let _ = writeln!(o, "\nRestarted by the pod-template stamp:");
        list(&mut o, &self.restarts, "nothing");
        if !self.missing.is_empty() {
            let _ = writeln!(o, "  named but not found: {}", self.missing.join(", "));
        }
        let _ = writeln!(
            o,
            "\nConsumer pods ({} read a target Secret now):",
            self.consumer_pods
        );
        if self.pods.is_empty() {
            let _ = writeln!(o, "  none to wait on");
        }
        for (what, line) in &self.pods {
            let action = match what {
                Waiting::Restarting => "restarted, then waited on",
                Waiting::JobRunning => "waited on until the Job's pods finish",
                Waiting::Draining => "waited on until they are gone",
                Waiting::Unmanaged => match self.unmanaged_policy {
                    UnmanagedPods::Hold => "unmanaged: the rotation holds until they are gone",
                    UnmanagedPods::Delete => "unmanaged: deleted by the operator",
                    UnmanagedPods::Ignore => "unmanaged: ignored, their calls will be refused",
                },
            };
            let _ = writeln!(o, "  {line}: {action}");
        }
        let _ = writeln!(
            o,
            "\nCopies of the current credential outside the rotation:"
        );
        match self.copies_skipped {
            Some(why) => {
                let _ = writeln!(o, "  not looked for: {why}");
            }
            None => {
                let copies: Vec<String> = self
                    .copies
                    .iter()
                    .map(|c| format!("{}/{} key {}", c.namespace, c.secret, c.key))
                    .collect();
                list(&mut o, &copies, "none");
            }
        }
        let _ = writeln!(o, "\nOther resources on this account:");
        list(&mut o, &self.claimants, "none");
        let _ = writeln!(o);
        if self.holds.is_empty() {
            let _ = writeln!(o, "Verdict: would proceed to promotion.");
        } else {
            let _ = writeln!(o, "Verdict: would hold, nothing promoted:");
            for h in &self.holds {
                let _ = writeln!(o, "  {h}");
            }
        }
        o
    }
}

fn list(o: &mut String, items: &[String], empty: &str) {
    if items.is_empty() {
        let _ = writeln!(o, "  {empty}");
    }
    for i in items {
        let _ = writeln!(o, "  {i}");
    }
}

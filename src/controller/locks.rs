//! Who may rotate on a Twilio account now. An Auth Token rotation takes the whole account: the
//! account has one secondary-token slot, and promoting it changes the credential every caller
//! of the account (the operator's API key rotations included) authenticates with. API keys are
//! independent: rotations of different keys of one account run together, unless they write the
//! same Secret or replace the same key (then they take turns: at once, each would find the
//! other's key in the Secret, or the first to finish would delete a key the other's pods run).
//!
//! The in-process map closes the race between two resources that become due together; the
//! resources' status (a rotation in flight) covers what this process did not start itself.

use crate::api::TokenRotationSpec;
use crate::providers::CredentialKind;
use crate::rotation::Holder;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The lock key: credentials are per region, so the same SID in two regions is two accounts.
pub fn account_key(account_sid: &str, region: Option<&str>) -> String {
    format!(
        "{}/{}",
        region.unwrap_or("us1"),
        account_sid.to_ascii_uppercase()
    )
}

/// Whether two specs rotate on the same account (their [`account_key`]s are equal), without
/// building the keys.
pub fn same_account(a: &TokenRotationSpec, b: &TokenRotationSpec) -> bool {
    a.twilio
        .account_sid
        .eq_ignore_ascii_case(&b.twilio.account_sid)
        && a.twilio.region.as_deref().unwrap_or("us1")
            == b.twilio.region.as_deref().unwrap_or("us1")
}

/// The key an API key rotation replaces (whose deletion ends it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replaces {
    /// This key (its SID).
    Key(String),
    /// None: the rotation makes the first key.
    Nothing,
    /// Not known (not read yet, or unreadable): counted as any key.
    Unknown,
}

impl Replaces {
    /// What status tells of a resource's key: the one its rotation in flight replaces (recorded
    /// once distributed), else the one its last rotation made current.
    pub fn from_status(status: Option<&crate::api::TokenRotationStatus>) -> Self {
        let in_flight = status.and_then(|s| s.rotation.as_ref());
        match in_flight {
            Some(r) if r.key_sid.is_some() => {
                return r.previous_key_sid.clone().map_or(Self::Nothing, Self::Key)
            }
            _ => {}
        }
        status
            .and_then(|s| s.api_key.as_ref())
            .and_then(|k| k.current_key_sid.clone())
            .map_or(Self::Unknown, Self::Key)
    }

    fn may_match(&self, other: &Replaces) -> bool {
        match (self, other) {
            (Self::Nothing, _) | (_, Self::Nothing) => false,
            (Self::Unknown, _) | (_, Self::Unknown) => true,
            (Self::Key(a), Self::Key(b)) => a == b,
        }
    }
}

/// What a rotation takes of its account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountUse {
    /// The whole account (an Auth Token rotation).
    Whole,
    /// A share of it (an API key rotation): the Secrets it writes, as (namespace, name), with
    /// `*` (any) for a cluster rotation, whose namespaces may change; and the key it replaces.
    /// Two rotations replacing one key take turns too: the first to finish deletes the key
    /// while the other's pods may still run it (each rotation's barrier covers only its own
    /// consumers).
    Shared {
        secrets: BTreeSet<(String, String)>,
        replaces: Replaces,
    },
}

impl AccountUse {
    /// From the spec a resource rotates with; `namespace` is `None` for a cluster rotation.
    pub fn of(spec: &TokenRotationSpec, namespace: Option<&str>, replaces: Replaces) -> Self {
        match CredentialKind::of(spec) {
            // No kind (the CRD rejects that): take nothing less than the whole account.
            Some(CredentialKind::AuthToken) | None => Self::Whole,
            Some(CredentialKind::ApiKey) => Self::Shared {
                secrets: spec
                    .secrets
                    .iter()
                    .map(|s| (namespace.unwrap_or("*").to_owned(), s.name.clone()))
                    .collect(),
                replaces,
            },
        }
    }

    /// Whether the two may not run together on one account.
    pub fn excludes(&self, other: &AccountUse) -> bool {
        match (self, other) {
            (Self::Whole, _) | (_, Self::Whole) => true,
            (
                Self::Shared {
                    secrets: a,
                    replaces: x,
                },
                Self::Shared {
                    secrets: b,
                    replaces: y,
                },
            ) => {
                x.may_match(y)
                    || a.iter().any(|(ns, name)| {
                        b.iter()
                            .any(|(n, m)| m == name && (n == ns || n == "*" || ns == "*"))
                    })
            }
        }
    }

    /// The same, replacing `replaces` (for an API key rotation).
    #[cfg(test)]
    pub fn replacing(self, replaces: Replaces) -> Self {
        match self {
            Self::Whole => Self::Whole,
            Self::Shared { secrets, .. } => Self::Shared { secrets, replaces },
        }
    }
}

/// How long an Auth Token rotation waiting for API key rotations to end keeps new ones from
/// starting on its account, unless it asks again (it does at each poll while it waits).
const RESERVATION: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Account {
    holders: BTreeMap<Holder, AccountUse>,
    /// An Auth Token rotation waiting for the shares to end: no new share starts meanwhile, so
    /// a steady stream of API key rotations cannot keep it waiting for ever.
    reserved: Option<(Holder, Instant)>,
}

impl Account {
    /// Who holds the next turn: a reservation renewed within [`RESERVATION`].
    fn reserved_by(&self) -> Option<&Holder> {
        self.reserved
            .as_ref()
            .filter(|(_, at)| at.elapsed() < RESERVATION)
            .map(|(h, _)| h)
    }

    fn blocker(&self, holder: &Holder, wants: &AccountUse, starting: bool) -> Option<Holder> {
        if let Some((h, _)) = self
            .holders
            .iter()
            .find(|(h, u)| *h != holder && u.excludes(wants))
        {
            return Some(h.clone());
        }
        self.reserved_by()
            .filter(|h| starting && *h != holder)
            .cloned()
    }
}

#[derive(Default)]
pub struct AccountLocks(Mutex<HashMap<String, Account>>);

/// Why a rotation may not start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Busy {
    /// Another resource rotates on the same account in a way that excludes this one.
    Account(Holder),
    /// `--max-concurrent-rotations` rotations are in flight.
    Capacity(usize),
}

impl AccountLocks {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Account>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `wants` of the account for `holder` if nothing another resource holds excludes
    /// it and, with a `limit` (0: none), fewer than `limit` resources rotate: those holding a
    /// lock here and `in_flight` (from status, which covers rotations another process
    /// started). Checked and taken under one lock, so two resources starting at once cannot
    /// both take the last place. A reservation by a waiting Auth Token rotation stops only
    /// `starting` ones: a rotation in flight registers whatever waits.
    pub fn try_start(
        &self,
        account: &str,
        holder: &Holder,
        wants: &AccountUse,
        starting: bool,
        limit: usize,
        in_flight: &BTreeSet<Holder>,
    ) -> Result<(), Busy> {
        let mut map = self.map();
        let entry = map.get(account);
        if let Some(h) = entry.and_then(|a| a.blocker(holder, wants, starting)) {
            return Err(Busy::Account(h));
        }
        if limit > 0 {
            let rotating: BTreeSet<&Holder> = map
                .values()
                .flat_map(|a| a.holders.keys())
                .chain(in_flight.iter())
                .collect();
            if !rotating.contains(holder) && rotating.len() >= limit {
                return Err(Busy::Capacity(limit));
            }
        }
        let a = map.entry(account.to_owned()).or_default();
        if a.reserved.as_ref().is_some_and(|(r, _)| r == holder) {
            a.reserved = None;
        }
        // A start takes what it read now; a rotation in flight keeps what it took when it
        // started (its replaced key was read then; status tells it only later).
        if starting {
            a.holders.insert(holder.clone(), wants.clone());
        } else {
            a.holders
                .entry(holder.clone())
                .or_insert_with(|| wants.clone());
        }
        Ok(())
    }

    /// `holder`, due but kept waiting, asks for the next turn: for an Auth Token rotation (the
    /// whole account) no new API key rotation starts on the account until it has had it.
    pub fn reserve(&self, account: &str, holder: &Holder, wants: &AccountUse) {
        if *wants != AccountUse::Whole {
            return;
        }
        let mut map = self.map();
        let a = map.entry(account.to_owned()).or_default();
        if a.reserved_by().is_none_or(|r| r == holder) {
            a.reserved = Some((holder.clone(), Instant::now()));
        }
    }

    /// Who, holding a lock here, keeps `holder` from starting `wants` on the account now.
    pub fn blocker(&self, account: &str, holder: &Holder, wants: &AccountUse) -> Option<Holder> {
        self.map()
            .get(account)
            .and_then(|a| a.blocker(holder, wants, true))
    }

    /// Whether `holder` has a lock on the account here (then this map, not status, says what
    /// its rotation takes: the replaced key was read when it started).
    pub fn holds(&self, account: &str, holder: &Holder) -> bool {
        self.map()
            .get(account)
            .is_some_and(|a| a.holders.contains_key(holder))
    }

    /// Releases every account `holder` has (the resource is gone).
    pub fn release_holder(&self, holder: &Holder) {
        self.retain_holders(|h| h != holder);
    }

    /// Releases the locks and reservations of every holder for which `live` is false (deleted
    /// resources), and expired reservations.
    pub fn retain_holders(&self, live: impl Fn(&Holder) -> bool) {
        let mut map = self.map();
        for a in map.values_mut() {
            a.holders.retain(|h, _| live(h));
            // A reservation nobody renewed (the waiter is no longer due) goes too.
            if a.reserved_by().is_none_or(|h| !live(h)) {
                a.reserved = None;
            }
        }
        map.retain(|_, a| !a.holders.is_empty() || a.reserved.is_some());
    }

    /// Releases what `holder` has of the account (its rotation ended).
    pub fn release(&self, account: &str, holder: &Holder) {
        let mut map = self.map();
        if let Some(a) = map.get_mut(account) {
            a.holders.remove(holder);
            if a.holders.is_empty() && a.reserved.is_none() {
                map.remove(account);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str) -> Holder {
        Holder::TokenRotation {
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    fn key(secrets: &[&str]) -> AccountUse {
        AccountUse::Shared {
            secrets: secrets
                .iter()
                .map(|s| ("ns".to_owned(), s.to_string()))
                .collect(),
            replaces: Replaces::Nothing,
        }
    }

    fn shared(ns: &str, secret: &str) -> AccountUse {
        AccountUse::Shared {
            secrets: [(ns.to_owned(), secret.to_owned())].into(),
            replaces: Replaces::Nothing,
        }
    }

    fn start(l: &AccountLocks, account: &str, who: &str, wants: &AccountUse) -> Result<(), Busy> {
        l.try_start(account, &h(who), wants, true, 0, &BTreeSet::new())
    }

    #[test]
    fn same_account_agrees_with_the_account_key() {
        let spec = |sid: &str, region: Option<&str>| -> TokenRotationSpec {
            serde_json::from_value(serde_json::json!({
                "twilio": {"accountSid": sid, "region": region,
                           "credentialsSecretRef": {"name": "admin", "key": "authToken"}},
                "authToken": {},
                "secrets": [{"name": "creds", "tokenKey": "T"}]
            }))
            .unwrap()
        };
        let specs = [
            spec("AC00", None),
            spec("ac00", Some("us1")),
            spec("AC00", Some("ie1")),
            spec("AC01", None),
        ];
        for a in &specs {
            for b in &specs {
                let keys_equal = account_key(&a.twilio.account_sid, a.twilio.region.as_deref())
                    == account_key(&b.twilio.account_sid, b.twilio.region.as_deref());
                assert_eq!(
                    same_account(a, b),
                    keys_equal,
                    "{:?} / {:?}",
                    a.twilio,
                    b.twilio
                );
            }
        }
        assert!(same_account(&specs[0], &specs[1]));
    }

    #[test]
    fn at_most_limit_resources_rotate_at_once() {
        let l = AccountLocks::default();
        let none = BTreeSet::new();
        let whole = AccountUse::Whole;
        assert!(l.try_start("a", &h("one"), &whole, true, 2, &none).is_ok());
        assert!(l.try_start("b", &h("two"), &whole, true, 2, &none).is_ok());
        assert_eq!(
            l.try_start("c", &h("three"), &whole, true, 2, &none),
            Err(Busy::Capacity(2))
        );
        assert!(
            l.try_start("a2", &h("one"), &whole, true, 2, &none).is_ok(),
            "a holder already counted"
        );
        l.release_holder(&h("two"));
        // One in flight from status (started by another replica) counts too.
        let status: BTreeSet<Holder> = [h("four")].into();
        assert_eq!(
            l.try_start("c", &h("three"), &whole, true, 2, &status),
            Err(Busy::Capacity(2))
        );
        assert!(l
            .try_start("c", &h("three"), &whole, true, 3, &status)
            .is_ok());
        assert!(
            l.try_start("d", &h("five"), &whole, true, 0, &status)
                .is_ok(),
            "0: no limit"
        );
    }

    #[test]
    fn one_auth_token_rotation_per_account_and_region() {
        let l = AccountLocks::default();
        let a = account_key("ac00", None);
        let whole = AccountUse::Whole;
        assert_eq!(a, "us1/AC00");
        assert!(start(&l, &a, "one", &whole).is_ok());
        assert!(start(&l, &a, "one", &whole).is_ok(), "re-entrant");
        assert_eq!(start(&l, &a, "two", &whole), Err(Busy::Account(h("one"))));
        let ie1 = account_key("AC00", Some("ie1"));
        assert!(start(&l, &ie1, "two", &whole).is_ok());
        l.release(&a, &h("two"));
        assert_eq!(l.blocker(&a, &h("two"), &whole), Some(h("one")));
        l.release(&a, &h("one"));
        assert!(start(&l, &a, "two", &whole).is_ok());
        l.release_holder(&h("two"));
        assert_eq!(l.blocker(&a, &h("x"), &whole), None);
        assert!(start(&l, &a, "three", &whole).is_ok());
        l.retain_holders(|x| *x == h("two"));
        assert_eq!(
            l.blocker(&a, &h("x"), &whole),
            None,
            "ns/three is gone: its lock is released"
        );
        assert_eq!(l.blocker(&ie1, &h("x"), &whole), None);
    }

    #[test]
    fn api_keys_of_one_account_rotate_together_unless_they_write_one_secret() {
        let l = AccountLocks::default();
        assert!(start(&l, "a", "k1", &key(&["app-1"])).is_ok());
        assert!(
            start(&l, "a", "k2", &key(&["app-2"])).is_ok(),
            "independent keys"
        );
        // Registering again (in flight) keeps what it took at the start.
        let unknown = key(&["app-1"]).replacing(Replaces::Unknown);
        assert!(l
            .try_start("a", &h("k1"), &unknown, false, 0, &BTreeSet::new())
            .is_ok());
        assert!(
            start(&l, "a", "k7", &key(&["app-7"])).is_ok(),
            "k1 still replaces nothing"
        );
        l.release("a", &h("k7"));
        // A new start reads afresh: what it replaces now is what counts.
        let sk9 = |secret: &str| key(&[secret]).replacing(Replaces::Key("SK9".into()));
        assert!(start(&l, "a", "k1", &sk9("app-1")).is_ok());
        assert_eq!(
            start(&l, "a", "k8", &sk9("app-8")),
            Err(Busy::Account(h("k1")))
        );
        assert_eq!(
            start(&l, "a", "k3", &key(&["app-3", "app-1"])),
            Err(Busy::Account(h("k1"))),
            "writes k1's Secret: takes turns"
        );
        // A cluster rotation's Secret name matches in any namespace.
        let anywhere = shared("*", "app-2");
        assert_eq!(start(&l, "a", "c", &anywhere), Err(Busy::Account(h("k2"))));
        let elsewhere = shared("other", "app-1");
        assert!(
            start(&l, "a", "k4", &elsewhere).is_ok(),
            "another namespace's Secret"
        );
        // The Auth Token excludes every key rotation of its account, both ways.
        assert_eq!(
            start(&l, "a", "t", &AccountUse::Whole),
            Err(Busy::Account(h("k1")))
        );
        assert!(start(&l, "b", "t", &AccountUse::Whole).is_ok());
        assert_eq!(
            start(&l, "b", "k5", &key(&["x"])),
            Err(Busy::Account(h("t")))
        );
    }

    #[test]
    fn api_key_rotations_replacing_one_key_take_turns() {
        let replacing = |secret: &str, r: Replaces| shared("ns", secret).replacing(r);
        let k0 = || Replaces::Key("SK0".into());
        assert!(replacing("a", k0()).excludes(&replacing("b", k0())));
        assert!(!replacing("a", k0()).excludes(&replacing("b", Replaces::Key("SK1".into()))));
        assert!(
            !replacing("a", k0()).excludes(&replacing("b", Replaces::Nothing)),
            "a first key replaces nothing"
        );
        assert!(
            replacing("a", k0()).excludes(&replacing("b", Replaces::Unknown)),
            "not known: any key"
        );
        assert!(replacing("a", Replaces::Unknown).excludes(&replacing("b", Replaces::Unknown)));
        assert!(!replacing("a", Replaces::Nothing).excludes(&replacing("b", Replaces::Nothing)));
    }

    #[test]
    fn a_waiting_auth_token_rotation_is_not_overtaken_by_new_keys() {
        let l = AccountLocks::default();
        assert!(start(&l, "a", "k1", &key(&["app-1"])).is_ok());
        assert_eq!(
            start(&l, "a", "t", &AccountUse::Whole),
            Err(Busy::Account(h("k1")))
        );
        // Only a waiting Auth Token rotation reserves.
        l.reserve("a", &h("k0"), &key(&["app-0"]));
        assert!(start(&l, "a", "k9", &key(&["app-9"])).is_ok());
        l.release("a", &h("k9"));
        l.reserve("a", &h("t"), &AccountUse::Whole);
        // t waits: a new key rotation does not start ahead of it...
        assert_eq!(
            start(&l, "a", "k2", &key(&["app-2"])),
            Err(Busy::Account(h("t")))
        );
        // ...but one in flight (after a restart of the operator) registers anyway.
        assert!(l
            .try_start("a", &h("k3"), &key(&["app-3"]), false, 0, &BTreeSet::new())
            .is_ok());
        l.release("a", &h("k1"));
        assert_eq!(
            start(&l, "a", "t", &AccountUse::Whole),
            Err(Busy::Account(h("k3")))
        );
        l.release("a", &h("k3"));
        assert!(start(&l, "a", "t", &AccountUse::Whole).is_ok(), "its turn");
        l.release("a", &h("t"));
        assert!(
            start(&l, "a", "k2", &key(&["app-2"])).is_ok(),
            "reservation gone"
        );
        // A waiter that is deleted gives its reservation up.
        assert_eq!(
            start(&l, "a", "t2", &AccountUse::Whole),
            Err(Busy::Account(h("k2")))
        );
        l.release_holder(&h("t2"));
        assert!(start(&l, "a", "k6", &key(&["app-6"])).is_ok());
    }
}

//! One rotation per Twilio account at a time: an account has a single secondary-token slot.
//!
//! The in-process map closes the race between two resources that become due together; the
//! resources' status (a rotation in flight) covers what this process did not start itself.

use crate::rotation::Holder;
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

#[derive(Default)]
pub struct AccountLocks(Mutex<HashMap<String, Holder>>);

/// The lock key: credentials are per region, so the same SID in two regions is two accounts.
pub fn account_key(account_sid: &str, region: Option<&str>) -> String {
    format!(
        "{}/{}",
        region.unwrap_or("us1"),
        account_sid.to_ascii_uppercase()
    )
}

/// Why a rotation may not start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Busy {
    /// Another resource rotates the same account.
    Account(Holder),
    /// `--max-concurrent-rotations` rotations are in flight.
    Capacity(usize),
}

impl AccountLocks {
    /// Takes the account for `holder`, or names the current holder.
    pub fn try_acquire(&self, account: &str, holder: &Holder) -> Result<(), Holder> {
        match self.try_start(account, holder, 0, &BTreeSet::new()) {
            Ok(()) => Ok(()),
            Err(Busy::Account(h)) => Err(h),
            Err(Busy::Capacity(_)) => Ok(()),
        }
    }

    /// Takes the account for `holder` if no other resource has it and, with a `limit` (0: none),
    /// fewer than `limit` resources rotate: those holding a lock here and `in_flight` (from
    /// status, which covers rotations another process started). Checked and taken under one
    /// lock, so two resources starting at once cannot both take the last place.
    pub fn try_start(
        &self,
        account: &str,
        holder: &Holder,
        limit: usize,
        in_flight: &BTreeSet<Holder>,
    ) -> Result<(), Busy> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = map.get(account).filter(|h| *h != holder) {
            return Err(Busy::Account(h.clone()));
        }
        if limit > 0 {
            let rotating: BTreeSet<&Holder> = map.values().chain(in_flight.iter()).collect();
            if !rotating.contains(holder) && rotating.len() >= limit {
                return Err(Busy::Capacity(limit));
            }
        }
        map.insert(account.to_owned(), holder.clone());
        Ok(())
    }

    pub fn holder(&self, account: &str) -> Option<Holder> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(account).cloned()
    }

    /// Releases every account `holder` has (the resource is gone).
    pub fn release_holder(&self, holder: &Holder) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, h| h != holder);
    }

    /// Releases the accounts of every holder for which `live` is false (deleted resources).
    pub fn retain_holders(&self, live: impl Fn(&Holder) -> bool) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, h| live(h));
    }

    pub fn release(&self, account: &str, holder: &Holder) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(account) == Some(holder) {
            map.remove(account);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_limit_resources_rotate_at_once() {
        let l = AccountLocks::default();
        let h = |n: &str| Holder::TokenRotation {
            namespace: "ns".into(),
            name: n.into(),
        };
        let none = BTreeSet::new();
        assert!(l.try_start("a", &h("one"), 2, &none).is_ok());
        assert!(l.try_start("b", &h("two"), 2, &none).is_ok());
        assert_eq!(
            l.try_start("c", &h("three"), 2, &none),
            Err(Busy::Capacity(2))
        );
        assert!(
            l.try_start("a2", &h("one"), 2, &none).is_ok(),
            "a holder already counted"
        );
        l.release_holder(&h("two"));
        // One in flight from status (started by another replica) counts too.
        let status: BTreeSet<Holder> = [h("four")].into();
        assert_eq!(
            l.try_start("c", &h("three"), 2, &status),
            Err(Busy::Capacity(2))
        );
        assert!(l.try_start("c", &h("three"), 3, &status).is_ok());
        assert!(
            l.try_start("d", &h("five"), 0, &status).is_ok(),
            "0: no limit"
        );
    }

    fn h(name: &str) -> Holder {
        Holder::TokenRotation {
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    #[test]
    fn one_holder_per_account_and_region() {
        let l = AccountLocks::default();
        let a = account_key("ac00", None);
        assert_eq!(a, "us1/AC00");
        assert!(l.try_acquire(&a, &h("one")).is_ok());
        assert!(l.try_acquire(&a, &h("one")).is_ok(), "re-entrant");
        assert_eq!(l.try_acquire(&a, &h("two")), Err(h("one")));
        assert!(l
            .try_acquire(&account_key("AC00", Some("ie1")), &h("two"))
            .is_ok());
        l.release(&a, &h("two"));
        assert_eq!(l.holder(&a), Some(h("one")));
        l.release(&a, &h("one"));
        assert!(l.try_acquire(&a, &h("two")).is_ok());
        l.release_holder(&h("two"));
        assert_eq!(l.holder(&a), None);
        assert!(l.try_acquire(&a, &h("three")).is_ok());
        l.retain_holders(|x| *x == h("two"));
        assert_eq!(l.holder(&a), None, "ns/three is gone: its lock is released");
        assert_eq!(l.holder(&account_key("AC00", Some("ie1"))), None);
    }
}

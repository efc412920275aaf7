//! One rotation per Twilio account at a time: an account has a single secondary-token slot.
//!
//! The in-process map closes the race between two resources that become due together; the
//! resources' status (a rotation in flight) covers what this process did not start itself.

use crate::rotation::Holder;
use std::collections::HashMap;
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

impl AccountLocks {
    /// Takes the account for `holder`, or names the current holder.
    pub fn try_acquire(&self, account: &str, holder: &Holder) -> Result<(), Holder> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(account) {
            Some(h) if h != holder => Err(h.clone()),
            _ => {
                map.insert(account.to_owned(), holder.clone());
                Ok(())
            }
        }
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

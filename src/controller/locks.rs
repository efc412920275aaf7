//! One rotation per Twilio account at a time: an account has a single secondary-token slot.
//!
//! The in-process map closes the race between two resources that become due together; the
//! resources' status (a rotation in flight) covers what this process did not start itself.

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct AccountLocks(Mutex<HashMap<String, String>>);

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
    pub fn try_acquire(&self, account: &str, holder: &str) -> Result<(), String> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(account) {
            Some(h) if h != holder => Err(h.clone()),
            _ => {
                map.insert(account.to_owned(), holder.to_owned());
                Ok(())
            }
        }
    }

    pub fn holder(&self, account: &str) -> Option<String> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(account).cloned()
    }

    /// Releases every account `holder` has (the resource is gone).
    pub fn release_holder(&self, holder: &str) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, h| h != holder);
    }

    /// Releases the accounts of every holder for which `live` is false (deleted resources).
    pub fn retain_holders(&self, live: impl Fn(&str) -> bool) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, h| live(h));
    }

    pub fn release(&self, account: &str, holder: &str) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(account).map(String::as_str) == Some(holder) {
            map.remove(account);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_per_account_and_region() {
        let l = AccountLocks::default();
        let a = account_key("ac00", None);
        assert_eq!(a, "us1/AC00");
        assert!(l.try_acquire(&a, "ns/one").is_ok());
        assert!(l.try_acquire(&a, "ns/one").is_ok(), "re-entrant");
        assert_eq!(l.try_acquire(&a, "ns/two"), Err("ns/one".into()));
        assert!(l
            .try_acquire(&account_key("AC00", Some("ie1")), "ns/two")
            .is_ok());
        l.release(&a, "ns/two");
        assert_eq!(l.holder(&a).as_deref(), Some("ns/one"));
        l.release(&a, "ns/one");
        assert!(l.try_acquire(&a, "ns/two").is_ok());
        l.release_holder("ns/two");
        assert_eq!(l.holder(&a), None);
        assert!(l.try_acquire(&a, "ns/three").is_ok());
        l.retain_holders(|h| h == "ns/two");
        assert_eq!(l.holder(&a), None, "ns/three is gone: its lock is released");
        assert_eq!(l.holder(&account_key("AC00", Some("ie1"))), None);
    }
}

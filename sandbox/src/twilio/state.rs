//! In-memory Twilio state: accounts, auth tokens, API keys, per-credential stats, request log.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::errors::ApiError;
use super::faults::FaultTable;
use super::ids;
use super::model::{CredentialStats, KeyInfo, KeyKind, RequestRecord, Stats, Switches};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenRole {
    Primary,
    Secondary,
    Retired,
}

impl TokenRole {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRole::Primary => "primary",
            TokenRole::Secondary => "secondary",
            TokenRole::Retired => "retired",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    /// Sequence number within the account: the id is `AC…/auth-token#n`.
    pub n: u32,
    pub value: String,
    pub role: TokenRole,
    pub created: DateTime<Utc>,
    /// Set when the API issued or promoted the token; drives the propagation delay.
    pub issued_at: Option<Instant>,
}

#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub sid: String,
    pub secret: String,
    pub friendly_name: Option<String>,
    pub kind: KeyKind,
    pub policy: Option<serde_json::Value>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    pub issued_at: Option<Instant>,
    /// Deleted keys stay (in creation order) for stats and page tokens.
    pub deleted: bool,
}

impl Key {
    pub fn role(&self) -> &'static str {
        if self.deleted {
            "deleted"
        } else {
            self.kind.as_str()
        }
    }

    pub fn info(&self) -> KeyInfo {
        KeyInfo {
            sid: self.sid.clone(),
            friendly_name: self.friendly_name.clone(),
            kind: self.kind,
            policy: self.policy.clone(),
            created: self.created,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Account {
    pub sid: String,
    pub region: String,
    pub parent: Option<String>,
    pub friendly_name: String,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    /// Every token the account ever had; exactly one primary, at most one secondary.
    pub tokens: Vec<Token>,
    pub keys: Vec<Key>,
}

impl Account {
    fn new(sid: &str, token: &str, region: &str, parent: Option<&str>) -> Self {
        let now = Utc::now();
        Account {
            sid: sid.to_string(),
            region: region.to_string(),
            parent: parent.map(str::to_string),
            friendly_name: match parent {
                Some(_) => format!("Subaccount {sid}"),
                None => format!("Account {sid}"),
            },
            created: now,
            updated: now,
            tokens: vec![Token {
                n: 1,
                value: token.to_string(),
                role: TokenRole::Primary,
                created: now,
                issued_at: None,
            }],
            keys: Vec::new(),
        }
    }

    pub fn primary(&self) -> &Token {
        self.tokens
            .iter()
            .find(|t| t.role == TokenRole::Primary)
            .expect("account always has a primary token")
    }

    pub fn secondary(&self) -> Option<&Token> {
        self.tokens.iter().find(|t| t.role == TokenRole::Secondary)
    }

    pub fn token_id(&self, t: &Token) -> String {
        format!("{}/auth-token#{}", self.sid, t.n)
    }

    pub fn live_keys(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter().filter(|k| !k.deleted)
    }

    pub fn key(&self, sid: &str) -> Option<&Key> {
        self.live_keys().find(|k| k.sid == sid)
    }

    pub fn key_mut(&mut self, sid: &str) -> Option<&mut Key> {
        self.keys.iter_mut().find(|k| !k.deleted && k.sid == sid)
    }

    /// Retires the current secondary (if any) and adds a new one.
    pub fn new_secondary(&mut self, issued_at: Instant) -> &Token {
        for t in &mut self.tokens {
            if t.role == TokenRole::Secondary {
                t.role = TokenRole::Retired;
            }
        }
        let n = self.tokens.len() as u32 + 1;
        self.tokens.push(Token {
            n,
            value: ids::auth_token(),
            role: TokenRole::Secondary,
            created: Utc::now(),
            issued_at: Some(issued_at),
        });
        self.updated = Utc::now();
        self.tokens.last().expect("just pushed")
    }
}

/// Who a request authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Principal {
    /// An auth token (primary or secondary) of `account`.
    Token { account: String },
    /// An API key of `account`.
    Key { account: String, kind: KeyKind },
}

impl Principal {
    pub fn account(&self) -> &str {
        match self {
            Principal::Token { account } | Principal::Key { account, .. } => account,
        }
    }

    /// Auth tokens and Main keys manage keys and read accounts; Standard and Restricted keys
    /// may not (401 / 20003).
    pub fn is_account_level(&self) -> bool {
        matches!(
            self,
            Principal::Token { .. }
                | Principal::Key {
                    kind: KeyKind::Main,
                    ..
                }
        )
    }
}

/// The credential a request presented, as far as the emulator recognises it (for logs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Presented {
    pub user: Option<String>,
    pub id: Option<String>,
    pub role: Option<String>,
}

pub(crate) const ANONYMOUS: &str = "(anonymous)";

#[derive(Debug, Default, Clone)]
struct Counts {
    authenticated: u64,
    refused: u64,
}

#[derive(Debug)]
pub(crate) struct State {
    pub accounts: BTreeMap<String, Account>,
    /// SK sid → owning AC sid (also for deleted keys).
    key_owner: HashMap<String, String>,
    counts: BTreeMap<String, Counts>,
    pub log: Vec<RequestRecord>,
    pub faults: FaultTable,
    pub propagation_delay: Duration,
    pub switches: Switches,
    pub inflight: u64,
    /// Requests in flight per authenticating user, for the concurrency limit.
    pub inflight_by_user: HashMap<String, usize>,
    pub latency: Duration,
    pub max_concurrent_per_account: Option<usize>,
    /// Requests refused by the concurrency limit.
    pub concurrency_refusals: u64,
}

impl State {
    pub fn new(switches: Switches, propagation_delay: Duration) -> Self {
        State {
            accounts: BTreeMap::new(),
            key_owner: HashMap::new(),
            counts: BTreeMap::new(),
            log: Vec::new(),
            faults: FaultTable::default(),
            propagation_delay,
            switches,
            inflight: 0,
            inflight_by_user: HashMap::new(),
            latency: Duration::ZERO,
            max_concurrent_per_account: None,
            concurrency_refusals: 0,
        }
    }

    pub fn add_account(&mut self, sid: &str, token: &str, region: &str, parent: Option<&str>) {
        self.accounts
            .insert(sid.to_string(), Account::new(sid, token, region, parent));
    }

    pub fn add_key(
        &mut self,
        account: &str,
        kind: KeyKind,
        friendly_name: Option<String>,
        policy: Option<serde_json::Value>,
        issued_at: Option<Instant>,
    ) -> Option<Key> {
        let acct = self.accounts.get_mut(account)?;
        let now = Utc::now();
        let key = Key {
            sid: ids::key_sid(),
            secret: ids::key_secret(),
            friendly_name,
            kind,
            policy,
            created: now,
            updated: now,
            issued_at,
            deleted: false,
        };
        acct.keys.push(key.clone());
        self.key_owner.insert(key.sid.clone(), account.to_string());
        Some(key)
    }

    /// Account owning a key sid (live or deleted).
    pub fn key_owner(&self, key_sid: &str) -> Option<&str> {
        self.key_owner.get(key_sid).map(String::as_str)
    }

    fn propagating(&self, issued_at: Option<Instant>) -> bool {
        issued_at.is_some_and(|t| t.elapsed() < self.propagation_delay)
    }

    /// Recognises a credential without counting it.
    pub fn identify(&self, creds: Option<&(String, String)>) -> Presented {
        let Some((user, pass)) = creds else {
            return Presented::default();
        };
        let mut p = Presented {
            user: Some(user.clone()),
            ..Presented::default()
        };
        if let Some(acct) = self.accounts.get(user) {
            if let Some(t) = acct.tokens.iter().find(|t| &t.value == pass) {
                p.id = Some(acct.token_id(t));
                p.role = Some(t.role.as_str().to_string());
            }
        } else if let Some(key) = self.find_key(user) {
            if &key.secret == pass {
                p.id = Some(key.sid.clone());
                p.role = Some(key.role().to_string());
            }
        }
        p
    }

    fn find_key(&self, sid: &str) -> Option<&Key> {
        let owner = self.key_owner.get(sid)?;
        self.accounts.get(owner)?.keys.iter().find(|k| k.sid == sid)
    }

    fn count(&mut self, id: &str, ok: bool) {
        let c = self.counts.entry(id.to_string()).or_default();
        if ok {
            c.authenticated += 1;
        } else {
            c.refused += 1;
        }
    }

    /// HTTP Basic authentication on `region`, counted in the stats.
    pub fn authenticate(
        &mut self,
        region: &str,
        creds: Option<&(String, String)>,
    ) -> Result<Principal, ApiError> {
        let Some((user, pass)) = creds else {
            self.count(ANONYMOUS, false);
            return Err(ApiError::authenticate("no credentials"));
        };
        if let Some(acct) = self.accounts.get(user) {
            let Some(tok) = acct.tokens.iter().find(|t| &t.value == pass) else {
                self.count(user, false);
                return Err(ApiError::authenticate("wrong auth token"));
            };
            let id = acct.token_id(tok);
            let refusal = if tok.role == TokenRole::Retired {
                Some("retired auth token".to_string())
            } else if acct.region != region {
                Some(format!(
                    "credential of region {} used on region {region}",
                    acct.region
                ))
            } else if self.propagating(tok.issued_at) {
                Some("auth token not yet propagated".to_string())
            } else {
                None
            };
            let principal = Principal::Token {
                account: acct.sid.clone(),
            };
            return self.finish_auth(&id, refusal, principal);
        }
        if let Some(key) = self.find_key(user) {
            if &key.secret != pass {
                self.count(user, false);
                return Err(ApiError::authenticate("wrong key secret"));
            }
            let owner = self.key_owner[user.as_str()].clone();
            let region_of_owner = self.accounts[&owner].region.clone();
            let refusal = if key.deleted {
                Some("deleted API key".to_string())
            } else if region_of_owner != region {
                Some(format!(
                    "credential of region {region_of_owner} used on region {region}"
                ))
            } else if self.propagating(key.issued_at) {
                Some("API key not yet propagated".to_string())
            } else {
                None
            };
            let principal = Principal::Key {
                account: owner,
                kind: key.kind,
            };
            let id = key.sid.clone();
            return self.finish_auth(&id, refusal, principal);
        }
        self.count(user, false);
        Err(ApiError::authenticate("unknown username"))
    }

    fn finish_auth(
        &mut self,
        id: &str,
        refusal: Option<String>,
        principal: Principal,
    ) -> Result<Principal, ApiError> {
        match refusal {
            Some(note) => {
                self.count(id, false);
                Err(ApiError::authenticate(note))
            }
            None => {
                self.count(id, true);
                Ok(principal)
            }
        }
    }

    /// Whether `principal_account` may act on `target` (itself or one of its subaccounts).
    pub fn reaches(&self, principal_account: &str, target: &str) -> bool {
        match self.accounts.get(target) {
            Some(t) => t.sid == principal_account || t.parent.as_deref() == Some(principal_account),
            None => false,
        }
    }

    fn role_of(&self, id: &str) -> String {
        if let Some((ac, n)) = id.split_once("/auth-token#") {
            let n: u32 = n.parse().unwrap_or(0);
            return self
                .accounts
                .get(ac)
                .and_then(|a| a.tokens.iter().find(|t| t.n == n))
                .map_or("unknown", |t| t.role.as_str())
                .to_string();
        }
        self.find_key(id)
            .map_or("unknown", |k| k.role())
            .to_string()
    }

    pub fn stats(&self) -> Stats {
        let credentials = self
            .counts
            .iter()
            .map(|(id, c)| {
                (
                    id.clone(),
                    CredentialStats {
                        id: id.clone(),
                        role: self.role_of(id),
                        authenticated: c.authenticated,
                        refused: c.refused,
                    },
                )
            })
            .collect();
        Stats { credentials }
    }

    /// Id of the token or key whose value is `secret`.
    pub fn id_for_secret(&self, secret: &str) -> Option<String> {
        self.accounts.values().find_map(|a| {
            a.tokens
                .iter()
                .find(|t| t.value == secret)
                .map(|t| a.token_id(t))
                .or_else(|| {
                    a.keys
                        .iter()
                        .find(|k| k.secret == secret)
                        .map(|k| k.sid.clone())
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(u: &str, p: &str) -> Option<(String, String)> {
        Some((u.to_string(), p.to_string()))
    }

    #[test]
    fn tokens_and_keys_authenticate_per_region() {
        let mut s = State::new(Switches::default(), Duration::ZERO);
        let ac = ids::account_sid();
        s.add_account(&ac, "tok1", "ie1", None);
        assert!(s.authenticate("ie1", creds(&ac, "tok1").as_ref()).is_ok());
        let e = s
            .authenticate("us1", creds(&ac, "tok1").as_ref())
            .unwrap_err();
        assert_eq!((e.status, e.code), (401, 20003));
        assert!(s.authenticate("ie1", creds(&ac, "nope").as_ref()).is_err());
        let key = s.add_key(&ac, KeyKind::Standard, None, None, None).unwrap();
        let p = s
            .authenticate("ie1", creds(&key.sid, &key.secret).as_ref())
            .unwrap();
        assert_eq!(
            p,
            Principal::Key {
                account: ac.clone(),
                kind: KeyKind::Standard
            }
        );
        assert!(!p.is_account_level());
        let st = s.stats();
        let tid = format!("{ac}/auth-token#1");
        assert_eq!(st.get(&tid).authenticated, 1);
        assert_eq!(st.get(&tid).refused, 1);
        assert_eq!(st.get(&tid).role, "primary");
        assert_eq!(
            st.get(&ac).refused,
            1,
            "unknown secret counted under username"
        );
        assert_eq!(st.get(&key.sid).role, "standard");
        assert_eq!(s.id_for_secret(&key.secret), Some(key.sid.clone()));
        assert_eq!(s.id_for_secret("tok1"), Some(tid));
    }

    #[test]
    fn propagation_delay_refuses_new_credentials_only() {
        let mut s = State::new(Switches::default(), Duration::from_secs(60));
        let ac = ids::account_sid();
        s.add_account(&ac, "tok1", "us1", None);
        let sec = s
            .accounts
            .get_mut(&ac)
            .unwrap()
            .new_secondary(Instant::now())
            .value
            .clone();
        assert!(s.authenticate("us1", creds(&ac, "tok1").as_ref()).is_ok());
        let e = s
            .authenticate("us1", creds(&ac, &sec).as_ref())
            .unwrap_err();
        assert_eq!(e.note.as_deref(), Some("auth token not yet propagated"));
        s.propagation_delay = Duration::ZERO;
        assert!(s.authenticate("us1", creds(&ac, &sec).as_ref()).is_ok());
    }

    #[test]
    fn subaccounts_are_reached_by_parent_only() {
        let mut s = State::new(Switches::default(), Duration::ZERO);
        s.add_account("ACparent", "t", "us1", None);
        s.add_account("ACchild", "t", "us1", Some("ACparent"));
        assert!(s.reaches("ACparent", "ACchild"));
        assert!(s.reaches("ACchild", "ACchild"));
        assert!(!s.reaches("ACchild", "ACparent"));
        assert!(!s.reaches("ACparent", "ACmissing"));
    }
}

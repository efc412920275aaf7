//! Credentials and typed Twilio responses. Every secret is a [`SecretString`], so `Debug` on
//! any of these types prints no token or key secret.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};

use crate::secret::SecretString;

/// HTTP Basic credentials plus the account whose 2010 resources a call addresses.
///
/// * Auth Token: user = Account SID (`AC…`), password = Auth Token.
/// * API key: user = key SID (`SK…`), password = key secret; the Account SID stays in 2010
///   paths and in IAM's `AccountSid` parameter.
///
/// The AuthTokens endpoints take no account parameter: they act on the authenticated account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    account_sid: String,
    username: String,
    password: SecretString,
}

impl Credentials {
    pub fn auth_token(account_sid: impl Into<String>, auth_token: SecretString) -> Self {
        let account_sid = account_sid.into();
        Self {
            username: account_sid.clone(),
            account_sid,
            password: auth_token,
        }
    }

    pub fn api_key(
        account_sid: impl Into<String>,
        key_sid: impl Into<String>,
        key_secret: SecretString,
    ) -> Self {
        Self {
            account_sid: account_sid.into(),
            username: key_sid.into(),
            password: key_secret,
        }
    }

    /// Addresses another account's 2010 resources (a subaccount, reached with its parent's
    /// credentials) without changing who authenticates.
    pub fn for_account(mut self, account_sid: impl Into<String>) -> Self {
        self.account_sid = account_sid.into();
        self
    }

    /// The account in 2010 paths and IAM's `AccountSid`.
    pub fn account_sid(&self) -> &str {
        &self.account_sid
    }

    /// The HTTP Basic user: an Account SID or an API key SID.
    pub fn username(&self) -> &str {
        &self.username
    }

    pub(crate) fn password(&self) -> &SecretString {
        &self.password
    }

    pub fn is_api_key(&self) -> bool {
        self.username.starts_with("SK")
    }
}

/// `POST /v1/AuthTokens/Secondary` (201). The token is shown only in this response.
#[derive(Debug, Clone, Deserialize)]
pub struct SecondaryAuthToken {
    #[serde(default)]
    pub account_sid: Option<String>,
    #[serde(deserialize_with = "de::secret")]
    pub secondary_auth_token: SecretString,
    #[serde(default, deserialize_with = "de::date")]
    pub date_created: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "de::date")]
    pub date_updated: Option<DateTime<Utc>>,
    #[serde(default)]
    pub url: Option<String>,
}

/// `POST /v1/AuthTokens/Promote` (200): the new primary Auth Token.
#[derive(Debug, Clone, Deserialize)]
pub struct PromotedAuthToken {
    #[serde(default)]
    pub account_sid: Option<String>,
    #[serde(deserialize_with = "de::secret")]
    pub auth_token: SecretString,
    #[serde(default, deserialize_with = "de::date")]
    pub date_created: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "de::date")]
    pub date_updated: Option<DateTime<Utc>>,
    #[serde(default)]
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatus {
    Active,
    Suspended,
    Closed,
    #[serde(other)]
    Other,
}

/// `GET /2010-04-01/Accounts/{Sid}.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Account {
    pub sid: String,
    #[serde(default)]
    pub friendly_name: Option<String>,
    #[serde(default)]
    pub status: Option<AccountStatus>,
    /// `Trial` or `Full`.
    #[serde(default, rename = "type")]
    pub account_type: Option<String>,
    #[serde(default)]
    pub owner_account_sid: Option<String>,
    /// The account's primary Auth Token (Twilio returns it to callers allowed to see it).
    #[serde(default, deserialize_with = "de::optional_secret")]
    pub auth_token: Option<SecretString>,
    #[serde(default, deserialize_with = "de::date")]
    pub date_created: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "de::date")]
    pub date_updated: Option<DateTime<Utc>>,
}

/// An API key as listed or fetched (2010 API or IAM v1); the secret is never returned again.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ApiKey {
    pub sid: String,
    #[serde(default)]
    pub friendly_name: Option<String>,
    #[serde(default, deserialize_with = "de::date")]
    pub date_created: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "de::date")]
    pub date_updated: Option<DateTime<Utc>>,
    /// IAM v1 only: a restricted key's policy (`null` for standard keys).
    #[serde(default)]
    pub policy: Option<serde_json::Value>,
    /// IAM v1 list only, e.g. `["rest_api", "signing"]`.
    #[serde(default, deserialize_with = "de::null_as_empty")]
    pub flags: Vec<String>,
}

/// A freshly created API key (201): the only response that carries its secret.
#[derive(Debug, Clone, Deserialize)]
pub struct NewApiKey {
    pub sid: String,
    #[serde(default)]
    pub friendly_name: Option<String>,
    #[serde(deserialize_with = "de::secret")]
    pub secret: SecretString,
    #[serde(default, deserialize_with = "de::date")]
    pub date_created: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "de::date")]
    pub date_updated: Option<DateTime<Utc>>,
    /// IAM v1 restricted keys: the policy as Twilio stored it.
    #[serde(default)]
    pub policy: Option<serde_json::Value>,
}

/// Whether a delete removed the resource or found it already gone after a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// Twilio answered 204 No Content.
    Deleted,
    /// An earlier attempt timed out, lost its connection or got a 5xx, and the retry got a
    /// 404: the earlier attempt most likely deleted it. A 404 on the first attempt (or after
    /// 429s only) is reported as [`ErrorKind::NotFound`](super::ErrorKind::NotFound) instead.
    GoneAfterRetry,
}

/// A 2010 API list page.
#[derive(Debug, Deserialize)]
pub(crate) struct KeyPage2010 {
    #[serde(default, deserialize_with = "de::null_as_empty")]
    pub keys: Vec<ApiKey>,
    #[serde(default)]
    pub next_page_uri: Option<String>,
}

/// An IAM v1 list page.
#[derive(Debug, Deserialize)]
pub(crate) struct KeyPageIam {
    #[serde(default, deserialize_with = "de::null_as_empty")]
    pub keys: Vec<ApiKey>,
    #[serde(default)]
    pub meta: Option<IamMeta>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct IamMeta {
    #[serde(default)]
    pub next_page_url: Option<String>,
}

mod de {
    use super::*;

    /// A required secret: the string moves straight into a `SecretString`. Error messages
    /// never repeat the value.
    pub fn secret<'de, D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(s) if !s.is_empty() => Ok(SecretString::from(s)),
            _ => Err(serde::de::Error::custom("secret field is null or empty")),
        }
    }

    pub fn optional_secret<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SecretString>, D::Error> {
        Ok(Option::<String>::deserialize(d)?
            .filter(|s| !s.is_empty())
            .map(SecretString::from))
    }

    /// Accounts v1 dates are ISO 8601, 2010 and IAM dates RFC 2822. An unparseable date is
    /// dropped rather than failing the call: a create response must never be lost over it.
    pub fn date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        let raw = Option::<String>::deserialize(d)?;
        Ok(raw.and_then(|s| {
            DateTime::parse_from_rfc3339(&s)
                .or_else(|_| DateTime::parse_from_rfc2822(&s))
                .ok()
                .map(|t| t.with_timezone(&Utc))
        }))
    }

    pub fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn secondary_token_parses_and_debug_hides_it() {
        let body = format!(
            r#"{{"account_sid":"ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","date_created":"2015-07-31T04:00:00Z","date_updated":"2015-07-31T04:00:00Z","secondary_auth_token":"{TOKEN}","url":"https://accounts.twilio.com/v1/AuthTokens/Secondary"}}"#
        );
        let t: SecondaryAuthToken = serde_json::from_str(&body).unwrap();
        assert_eq!(t.secondary_auth_token.expose(), TOKEN);
        assert_eq!(
            t.date_created.unwrap().to_rfc3339(),
            "2015-07-31T04:00:00+00:00"
        );
        assert!(!format!("{t:?}").contains(TOKEN));
    }

    #[test]
    fn promoted_token_parses_and_debug_hides_it() {
        let body = format!(
            r#"{{"account_sid":"ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","auth_token":"{TOKEN}","date_created":"2015-07-31T04:00:00Z","date_updated":"2015-07-31T04:00:00Z","url":"https://accounts.twilio.com/v1/AuthTokens/Promote"}}"#
        );
        let t: PromotedAuthToken = serde_json::from_str(&body).unwrap();
        assert_eq!(t.auth_token.expose(), TOKEN);
        assert!(!format!("{t:?}").contains(TOKEN));
    }

    #[test]
    fn missing_or_null_secret_is_an_error() {
        assert!(serde_json::from_str::<SecondaryAuthToken>(r#"{"account_sid":"AC1"}"#).is_err());
        assert!(serde_json::from_str::<PromotedAuthToken>(r#"{"auth_token":null}"#).is_err());
        assert!(serde_json::from_str::<NewApiKey>(r#"{"sid":"SK1","secret":""}"#).is_err());
    }

    #[test]
    fn account_parses_rfc2822_dates_and_hides_the_token() {
        let body = format!(
            r#"{{"auth_token":"{TOKEN}","date_created":"Thu, 30 Jul 2015 20:00:00 +0000","date_updated":"Thu, 30 Jul 2015 20:00:00 +0000","friendly_name":"friendly_name","owner_account_sid":"ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","sid":"ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","status":"active","type":"Full","uri":"/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.json"}}"#
        );
        let a: Account = serde_json::from_str(&body).unwrap();
        assert_eq!(a.status, Some(AccountStatus::Active));
        assert_eq!(a.account_type.as_deref(), Some("Full"));
        assert_eq!(a.auth_token.as_ref().unwrap().expose(), TOKEN);
        assert_eq!(
            a.date_created.unwrap().to_rfc3339(),
            "2015-07-30T20:00:00+00:00"
        );
        assert!(!format!("{a:?}").contains(TOKEN));
        let odd: Account =
            serde_json::from_str(r#"{"sid":"AC1","status":"frozen","date_created":"yesterday"}"#)
                .unwrap();
        assert_eq!(odd.status, Some(AccountStatus::Other));
        assert_eq!(odd.date_created, None);
    }

    #[test]
    fn new_key_hides_secret_and_keeps_policy() {
        let body = format!(
            r#"{{"sid":"SKaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","friendly_name":"foo","date_created":"Mon, 13 Jun 2016 22:50:08 +0000","date_updated":"Mon, 13 Jun 2016 22:50:08 +0000","secret":"{TOKEN}","policy":{{"allow":["/twilio/messaging/messages/read"]}}}}"#
        );
        let k: NewApiKey = serde_json::from_str(&body).unwrap();
        assert_eq!(k.secret.expose(), TOKEN);
        assert_eq!(
            k.policy.unwrap()["allow"][0],
            "/twilio/messaging/messages/read"
        );
        let again: NewApiKey = serde_json::from_str(&body).unwrap();
        assert!(!format!("{again:?}").contains(TOKEN));
    }

    #[test]
    fn credentials_debug_hides_the_password() {
        let c = Credentials::auth_token("ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", TOKEN.into());
        assert!(!format!("{c:?}").contains(TOKEN));
        assert_eq!(c.username(), "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        assert!(!c.is_api_key());
        let k = Credentials::api_key("AC1", "SK1", TOKEN.into()).for_account("AC2");
        assert!(!format!("{k:?}").contains(TOKEN));
        assert_eq!(k.account_sid(), "AC2");
        assert_eq!(k.username(), "SK1");
        assert!(k.is_api_key());
    }

    #[test]
    fn list_pages_parse_both_pagination_styles() {
        let p: KeyPage2010 = serde_json::from_str(
            r#"{"keys":[{"sid":"SK1","friendly_name":"a","date_created":null}],"next_page_uri":"/2010-04-01/Accounts/AC1/Keys.json?PageSize=1&Page=1&PageToken=PASK1"}"#,
        )
        .unwrap();
        assert_eq!(p.keys.len(), 1);
        assert!(p.next_page_uri.is_some());
        let p: KeyPageIam = serde_json::from_str(
            r#"{"keys":[{"sid":"SK1","flags":["rest_api","signing"],"policy":null}],"meta":{"next_page_url":null,"page":0}}"#,
        )
        .unwrap();
        assert_eq!(p.keys[0].flags, vec!["rest_api", "signing"]);
        assert!(p.meta.unwrap().next_page_url.is_none());
    }
}

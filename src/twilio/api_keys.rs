//! Accounts and API keys: the 2010 API (`api.twilio.com`) and IAM v1 (`iam.twilio.com`).

use std::collections::HashSet;

use super::auth_tokens::delete_outcome;
use super::client::{Request, TwilioClient};
use super::endpoint::Endpoint;
use super::error::TwilioError;
use super::types::{
    Account, ApiKey, Credentials, DeleteOutcome, KeyPage2010, KeyPageIam, NewApiKey,
};

/// Twilio's limit on `FriendlyName`.
pub const MAX_FRIENDLY_NAME_CHARS: usize = 64;

/// Stops a listing whose `next_page` links never end.
const MAX_PAGES: usize = 10_000;

impl TwilioClient {
    /// Fetches `creds.account_sid()` (`GET /2010-04-01/Accounts/{Sid}.json`): the cheap check
    /// that credentials work. [`ErrorKind::AuthenticationFailed`](super::ErrorKind) means they
    /// do not.
    pub async fn fetch_account(&self, creds: &Credentials) -> Result<Account, TwilioError> {
        let endpoint = Endpoint::FetchAccount;
        let account = checked_sid(endpoint, "AC", creds.account_sid())?;
        let req = Request {
            endpoint,
            creds,
            url: self.url(endpoint, &format!("/2010-04-01/Accounts/{account}.json")),
            query: Vec::new(),
            form: None,
        };
        self.execute(req, |r| r.json()).await
    }

    /// Fetches the account's balance (`GET /2010-04-01/Accounts/{Sid}/Balance.json`): a cheap
    /// read every kind of credential may make, used to tell whether credentials authenticate
    /// at all when they are an API key (a 403 means they do, but lack permission).
    pub async fn fetch_balance(&self, creds: &Credentials) -> Result<(), TwilioError> {
        let endpoint = Endpoint::FetchBalance;
        let account = checked_sid(endpoint, "AC", creds.account_sid())?;
        let req = Request {
            endpoint,
            creds,
            url: self.url(
                endpoint,
                &format!("/2010-04-01/Accounts/{account}/Balance.json"),
            ),
            query: Vec::new(),
            form: None,
        };
        self.execute(req, |_| Ok(())).await
    }

    /// Creates a standard API key through the 2010 API
    /// (`POST /2010-04-01/Accounts/{AccountSid}/Keys.json`, 201). Needs the Auth Token or a
    /// Main key (a standard key gets 401). Never retried after the request may have reached
    /// Twilio ([`TwilioError::OutcomeUnknown`]): the caller must list keys and delete any key
    /// carrying the friendly name it chose but not recorded, since its secret is lost.
    pub async fn create_api_key(
        &self,
        creds: &Credentials,
        friendly_name: &str,
    ) -> Result<NewApiKey, TwilioError> {
        let endpoint = Endpoint::CreateApiKey;
        let account = checked_sid(endpoint, "AC", creds.account_sid())?;
        checked_friendly_name(endpoint, friendly_name)?;
        let mut form = Vec::new();
        if !friendly_name.is_empty() {
            form.push(("FriendlyName", friendly_name.to_owned()));
        }
        let req = Request {
            endpoint,
            creds,
            url: self.url(
                endpoint,
                &format!("/2010-04-01/Accounts/{account}/Keys.json"),
            ),
            query: Vec::new(),
            form: Some(form),
        };
        self.execute(req, |r| r.json()).await
    }

    /// Lists all API keys of `creds.account_sid()` through the 2010 API, following
    /// `next_page_uri` over every page.
    pub async fn list_api_keys(&self, creds: &Credentials) -> Result<Vec<ApiKey>, TwilioError> {
        let endpoint = Endpoint::ListApiKeys;
        let account = checked_sid(endpoint, "AC", creds.account_sid())?;
        let first = self.url(
            endpoint,
            &format!("/2010-04-01/Accounts/{account}/Keys.json"),
        );
        let page_size = self.config().page_size.to_string();
        self.list_pages(endpoint, creds, first, vec![("PageSize", page_size)], |r| {
            let page: KeyPage2010 = r.json()?;
            Ok((page.keys, page.next_page_uri))
        })
        .await
    }

    /// Fetches one API key through the 2010 API.
    pub async fn fetch_api_key(
        &self,
        creds: &Credentials,
        key_sid: &str,
    ) -> Result<ApiKey, TwilioError> {
        let endpoint = Endpoint::FetchApiKey;
        let req = self.key_request_2010(endpoint, creds, key_sid)?;
        self.execute(req, |r| r.json()).await
    }

    /// Deletes an API key through the 2010 API (204). See [`DeleteOutcome`] for a 404 after
    /// a retry.
    pub async fn delete_api_key(
        &self,
        creds: &Credentials,
        key_sid: &str,
    ) -> Result<DeleteOutcome, TwilioError> {
        let endpoint = Endpoint::DeleteApiKey;
        let req = self.key_request_2010(endpoint, creds, key_sid)?;
        self.execute(req, |r| Ok(delete_outcome(r.gone_after_retry)))
            .await
    }

    fn key_request_2010<'a>(
        &self,
        endpoint: Endpoint,
        creds: &'a Credentials,
        key_sid: &str,
    ) -> Result<Request<'a>, TwilioError> {
        let account = checked_sid(endpoint, "AC", creds.account_sid())?;
        let key = checked_sid(endpoint, "SK", key_sid)?;
        Ok(Request {
            endpoint,
            creds,
            url: self.url(
                endpoint,
                &format!("/2010-04-01/Accounts/{account}/Keys/{key}.json"),
            ),
            query: Vec::new(),
            form: None,
        })
    }

    /// Creates a key through IAM v1 (`POST /v1/Keys`, 201) for `creds.account_sid()`: a
    /// standard key when `policy` is `None`, else a restricted key (`KeyType=restricted`) with
    /// `policy` sent as the `Policy` JSON string, e.g. `{"allow":["/twilio/messaging/messages/read"]}`.
    /// Same no-retry rule and recovery as [`TwilioClient::create_api_key`].
    pub async fn iam_create_api_key(
        &self,
        creds: &Credentials,
        friendly_name: &str,
        policy: Option<&serde_json::Value>,
    ) -> Result<NewApiKey, TwilioError> {
        let endpoint = Endpoint::IamCreateApiKey;
        let account = checked_sid(endpoint, "AC", creds.account_sid())?;
        checked_friendly_name(endpoint, friendly_name)?;
        let mut form = vec![("AccountSid", account.to_owned())];
        if !friendly_name.is_empty() {
            form.push(("FriendlyName", friendly_name.to_owned()));
        }
        if let Some(policy) = policy {
            if !policy.is_object() {
                return Err(TwilioError::InvalidArgument {
                    endpoint,
                    reason: "policy must be a JSON object".into(),
                });
            }
            form.push(("KeyType", "restricted".to_owned()));
            form.push(("Policy", policy.to_string()));
        }
        let req = Request {
            endpoint,
            creds,
            url: self.url(endpoint, "/v1/Keys"),
            query: Vec::new(),
            form: Some(form),
        };
        self.execute(req, |r| r.json()).await
    }

    /// Lists all keys of `creds.account_sid()` through IAM v1 (`GET /v1/Keys?AccountSid=…`),
    /// following `meta.next_page_url` over every page.
    pub async fn iam_list_api_keys(&self, creds: &Credentials) -> Result<Vec<ApiKey>, TwilioError> {
        let endpoint = Endpoint::IamListApiKeys;
        let account = checked_sid(endpoint, "AC", creds.account_sid())?;
        let first = self.url(endpoint, "/v1/Keys");
        let query = vec![
            ("AccountSid", account.to_owned()),
            ("PageSize", self.config().page_size.to_string()),
        ];
        self.list_pages(endpoint, creds, first, query, |r| {
            let page: KeyPageIam = r.json()?;
            Ok((page.keys, page.meta.and_then(|m| m.next_page_url)))
        })
        .await
    }

    /// Fetches one key through IAM v1 (`GET /v1/Keys/{Sid}`).
    pub async fn iam_fetch_api_key(
        &self,
        creds: &Credentials,
        key_sid: &str,
    ) -> Result<ApiKey, TwilioError> {
        let endpoint = Endpoint::IamFetchApiKey;
        let req = self.key_request_iam(endpoint, creds, key_sid)?;
        self.execute(req, |r| r.json()).await
    }

    /// Deletes a key through IAM v1 (`DELETE /v1/Keys/{Sid}`, 204). See [`DeleteOutcome`].
    pub async fn iam_delete_api_key(
        &self,
        creds: &Credentials,
        key_sid: &str,
    ) -> Result<DeleteOutcome, TwilioError> {
        let endpoint = Endpoint::IamDeleteApiKey;
        let req = self.key_request_iam(endpoint, creds, key_sid)?;
        self.execute(req, |r| Ok(delete_outcome(r.gone_after_retry)))
            .await
    }

    fn key_request_iam<'a>(
        &self,
        endpoint: Endpoint,
        creds: &'a Credentials,
        key_sid: &str,
    ) -> Result<Request<'a>, TwilioError> {
        let key = checked_sid(endpoint, "SK", key_sid)?;
        Ok(Request {
            endpoint,
            creds,
            url: self.url(endpoint, &format!("/v1/Keys/{key}")),
            query: Vec::new(),
            form: None,
        })
    }

    /// Fetches `first` and every page its "next" links lead to. Each page is one call (with
    /// its own retries and observer record).
    async fn list_pages(
        &self,
        endpoint: Endpoint,
        creds: &Credentials,
        first: String,
        first_query: Vec<(&'static str, String)>,
        parse: impl Fn(&super::client::Reply<'_>) -> Result<(Vec<ApiKey>, Option<String>), TwilioError>,
    ) -> Result<Vec<ApiKey>, TwilioError> {
        let mut keys = Vec::new();
        let mut seen = HashSet::new();
        let mut next = Some((first, first_query));
        while let Some((url, query)) = next.take() {
            if seen.len() >= MAX_PAGES || !seen.insert(url.clone()) {
                return Err(TwilioError::Decode {
                    endpoint,
                    url,
                    status: 200,
                    detail: "pagination does not terminate".into(),
                });
            }
            let req = Request {
                endpoint,
                creds,
                url,
                query,
                form: None,
            };
            let (page, link) = self.execute(req, |r| parse(&r)).await?;
            keys.extend(page);
            next = match link.filter(|l| !l.is_empty()) {
                Some(link) => Some((self.follow(endpoint, &link)?, Vec::new())),
                None => None,
            };
        }
        Ok(keys)
    }
}

/// SIDs go into URL paths: accept only `{prefix}` + 32 hex digits, so no argument can change
/// the path.
fn checked_sid<'s>(endpoint: Endpoint, prefix: &str, sid: &'s str) -> Result<&'s str, TwilioError> {
    let ok = sid.len() == prefix.len() + 32
        && sid.starts_with(prefix)
        && sid[prefix.len()..].chars().all(|c| c.is_ascii_hexdigit());
    if ok {
        Ok(sid)
    } else {
        Err(TwilioError::InvalidArgument {
            endpoint,
            // The value is not echoed: a caller mixing up arguments could pass a secret here.
            reason: format!("expected a {prefix} SID ({prefix} + 32 hex digits)"),
        })
    }
}

fn checked_friendly_name(endpoint: Endpoint, name: &str) -> Result<(), TwilioError> {
    if name.chars().count() > MAX_FRIENDLY_NAME_CHARS {
        return Err(TwilioError::InvalidArgument {
            endpoint,
            reason: format!("FriendlyName is longer than {MAX_FRIENDLY_NAME_CHARS} characters"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids_are_checked_before_they_reach_a_path() {
        let ep = Endpoint::FetchApiKey;
        assert!(checked_sid(ep, "SK", "SKaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").is_ok());
        assert!(checked_sid(ep, "SK", "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").is_err());
        assert!(checked_sid(ep, "SK", "SK../../../2010-04-01/Accounts.jso").is_err());
        assert!(checked_sid(ep, "AC", "AC1").is_err());
        assert!(checked_friendly_name(ep, &"x".repeat(64)).is_ok());
        assert!(checked_friendly_name(ep, &"x".repeat(65)).is_err());
    }
}

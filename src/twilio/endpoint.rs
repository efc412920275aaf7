//! The Twilio operations this client performs, for logs, metrics and retry decisions.

use std::fmt;

use super::config::Product;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    /// `POST accounts /v1/AuthTokens/Secondary`
    CreateSecondaryAuthToken,
    /// `DELETE accounts /v1/AuthTokens/Secondary`
    DeleteSecondaryAuthToken,
    /// `POST accounts /v1/AuthTokens/Promote`
    PromoteSecondaryAuthToken,
    /// `GET api /2010-04-01/Accounts/{Sid}.json`
    FetchAccount,
    /// `GET api /2010-04-01/Accounts/{AccountSid}/Balance.json`: readable with any credential
    /// that authenticates (Standard keys may not read the account itself).
    FetchBalance,
    /// `POST api /2010-04-01/Accounts/{AccountSid}/Keys.json`
    CreateApiKey,
    /// `GET api /2010-04-01/Accounts/{AccountSid}/Keys.json` (one page)
    ListApiKeys,
    /// `GET api /2010-04-01/Accounts/{AccountSid}/Keys/{Sid}.json`
    FetchApiKey,
    /// `DELETE api /2010-04-01/Accounts/{AccountSid}/Keys/{Sid}.json`
    DeleteApiKey,
    /// `POST iam /v1/Keys`
    IamCreateApiKey,
    /// `GET iam /v1/Keys` (one page)
    IamListApiKeys,
    /// `GET iam /v1/Keys/{Sid}`
    IamFetchApiKey,
    /// `DELETE iam /v1/Keys/{Sid}`
    IamDeleteApiKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HttpMethod {
    Get,
    Post,
    Delete,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Delete => "DELETE",
        }
    }
}

impl fmt::Display for HttpMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Endpoint {
    pub const ALL: [Endpoint; 13] = [
        Endpoint::CreateSecondaryAuthToken,
        Endpoint::DeleteSecondaryAuthToken,
        Endpoint::PromoteSecondaryAuthToken,
        Endpoint::FetchAccount,
        Endpoint::FetchBalance,
        Endpoint::CreateApiKey,
        Endpoint::ListApiKeys,
        Endpoint::FetchApiKey,
        Endpoint::DeleteApiKey,
        Endpoint::IamCreateApiKey,
        Endpoint::IamListApiKeys,
        Endpoint::IamFetchApiKey,
        Endpoint::IamDeleteApiKey,
    ];

    /// Stable snake_case name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::CreateSecondaryAuthToken => "create_secondary_auth_token",
            Endpoint::DeleteSecondaryAuthToken => "delete_secondary_auth_token",
            Endpoint::PromoteSecondaryAuthToken => "promote_secondary_auth_token",
            Endpoint::FetchAccount => "fetch_account",
            Endpoint::FetchBalance => "fetch_balance",
            Endpoint::CreateApiKey => "create_api_key",
            Endpoint::ListApiKeys => "list_api_keys",
            Endpoint::FetchApiKey => "fetch_api_key",
            Endpoint::DeleteApiKey => "delete_api_key",
            Endpoint::IamCreateApiKey => "iam_create_api_key",
            Endpoint::IamListApiKeys => "iam_list_api_keys",
            Endpoint::IamFetchApiKey => "iam_fetch_api_key",
            Endpoint::IamDeleteApiKey => "iam_delete_api_key",
        }
    }

    pub fn method(self) -> HttpMethod {
        match self {
            Endpoint::CreateSecondaryAuthToken
            | Endpoint::PromoteSecondaryAuthToken
            | Endpoint::CreateApiKey
            | Endpoint::IamCreateApiKey => HttpMethod::Post,
            Endpoint::DeleteSecondaryAuthToken
            | Endpoint::DeleteApiKey
            | Endpoint::IamDeleteApiKey => HttpMethod::Delete,
            Endpoint::FetchAccount
            | Endpoint::FetchBalance
            | Endpoint::ListApiKeys
            | Endpoint::FetchApiKey
            | Endpoint::IamListApiKeys
            | Endpoint::IamFetchApiKey => HttpMethod::Get,
        }
    }

    pub fn product(self) -> Product {
        match self {
            Endpoint::CreateSecondaryAuthToken
            | Endpoint::DeleteSecondaryAuthToken
            | Endpoint::PromoteSecondaryAuthToken => Product::Accounts,
            Endpoint::FetchAccount
            | Endpoint::FetchBalance
            | Endpoint::CreateApiKey
            | Endpoint::ListApiKeys
            | Endpoint::FetchApiKey
            | Endpoint::DeleteApiKey => Product::Api,
            Endpoint::IamCreateApiKey
            | Endpoint::IamListApiKeys
            | Endpoint::IamFetchApiKey
            | Endpoint::IamDeleteApiKey => Product::Iam,
        }
    }

    /// GET and DELETE may be repeated after a lost response; the POSTs create or promote
    /// something and may not.
    pub fn is_idempotent(self) -> bool {
        self.method() != HttpMethod::Post
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

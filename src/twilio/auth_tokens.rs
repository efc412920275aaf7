//! Auth Token rotation: `accounts.twilio.com/v1/AuthTokens/*`. These endpoints act on the
//! authenticated account, so a subaccount's token is rotated with its own credentials.

use super::client::{Request, TwilioClient};
use super::endpoint::Endpoint;
use super::error::TwilioError;
use super::types::{Credentials, DeleteOutcome, PromotedAuthToken, SecondaryAuthToken};

const SECONDARY: &str = "/v1/AuthTokens/Secondary";
const PROMOTE: &str = "/v1/AuthTokens/Promote";

impl TwilioClient {
    /// `SuppressEmailNotification=true` when configured; omitted otherwise (Twilio's default
    /// is to e-mail the account's owners and administrators).
    fn suppress_params(&self) -> Vec<(&'static str, String)> {
        if self.config().suppress_email_notification {
            vec![("SuppressEmailNotification", "true".to_owned())]
        } else {
            Vec::new()
        }
    }

    /// Creates the secondary Auth Token (`POST /v1/AuthTokens/Secondary`, 201).
    ///
    /// Never retried after the request may have reached Twilio: a timeout, a lost connection,
    /// a 5xx or an undecodable 201 returns [`TwilioError::OutcomeUnknown`]. The token can
    /// never be read again, so the caller must then delete the (possibly existing) secondary
    /// and create a fresh one. [`ErrorKind::SecondaryAlreadyExists`](super::ErrorKind) means
    /// a secondary exists already (from an earlier, unrecorded attempt): same recovery.
    pub async fn create_secondary_auth_token(
        &self,
        creds: &Credentials,
    ) -> Result<SecondaryAuthToken, TwilioError> {
        let endpoint = Endpoint::CreateSecondaryAuthToken;
        let req = Request {
            endpoint,
            creds,
            url: self.url(endpoint, SECONDARY),
            query: Vec::new(),
            form: Some(self.suppress_params()),
        };
        self.execute(req, |r| r.json()).await
    }

    /// Deletes the secondary Auth Token (`DELETE /v1/AuthTokens/Secondary`, 204). Retried on
    /// transient failures. No secondary at all gives [`ErrorKind::NotFound`](super::ErrorKind)
    /// on a first attempt, and [`DeleteOutcome::GoneAfterRetry`] when an earlier attempt may
    /// have deleted it.
    pub async fn delete_secondary_auth_token(
        &self,
        creds: &Credentials,
    ) -> Result<DeleteOutcome, TwilioError> {
        let endpoint = Endpoint::DeleteSecondaryAuthToken;
        let req = Request {
            endpoint,
            creds,
            url: self.url(endpoint, SECONDARY),
            query: self.suppress_params(),
            form: None,
        };
        self.execute(req, |r| Ok(delete_outcome(r.gone_after_retry)))
            .await
    }

    /// Promotes the secondary Auth Token to primary (`POST /v1/AuthTokens/Promote`, 200); the
    /// old primary stops working at once. Either token authenticates the call.
    ///
    /// Never retried after the request may have reached Twilio
    /// ([`TwilioError::OutcomeUnknown`]): the caller must find out which token is primary now,
    /// e.g. with [`TwilioClient::fetch_account`] using the secondary token, which works both
    /// before promotion (as secondary) and after (as primary), and with the old primary, which
    /// fails with 401 once promotion happened. No secondary to promote gives
    /// [`ErrorKind::NotFound`](super::ErrorKind).
    pub async fn promote_secondary_auth_token(
        &self,
        creds: &Credentials,
    ) -> Result<PromotedAuthToken, TwilioError> {
        let endpoint = Endpoint::PromoteSecondaryAuthToken;
        let req = Request {
            endpoint,
            creds,
            url: self.url(endpoint, PROMOTE),
            query: Vec::new(),
            form: Some(self.suppress_params()),
        };
        self.execute(req, |r| r.json()).await
    }
}

pub(crate) fn delete_outcome(gone_after_retry: bool) -> DeleteOutcome {
    if gone_after_retry {
        DeleteOutcome::GoneAfterRetry
    } else {
        DeleteOutcome::Deleted
    }
}

//! The Twilio side of an Auth Token rotation: each function is one step, safe to repeat.

use super::failure;
use crate::rotation::{Failure, FailureClass};
use crate::secret::SecretString;
use crate::twilio::{Credentials, DeleteOutcome, ErrorKind, TwilioClient};

/// Stage: create the secondary token. With `clear_existing`, first delete a secondary this
/// rotation may have created before (an attempt that crashed before storing it) or that the
/// user said to delete; without it, a secondary that exists belongs to someone else (the
/// Console, another tool or cluster) and is left alone. The caller stores the new token before
/// anything else happens.
pub async fn create_secondary(
    client: &TwilioClient,
    operator: &Credentials,
    clear_existing: bool,
) -> Result<SecretString, Failure> {
    if clear_existing {
        match client.delete_secondary_auth_token(operator).await {
            Ok(DeleteOutcome::Deleted) => {
                tracing::info!("deleted a secondary Auth Token that no rotation had stored")
            }
            // A retried delete found it gone: the first attempt most likely deleted it.
            Ok(DeleteOutcome::GoneAfterRetry) => {
                tracing::info!("a secondary Auth Token no rotation had stored is gone")
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(failure(&e, FailureClass::AuthenticationFailed)),
        }
    }
    match client.create_secondary_auth_token(operator).await {
        Ok(created) => Ok(created.secondary_auth_token),
        Err(e) if e.kind() == ErrorKind::SecondaryAlreadyExists && !clear_existing => {
            Err(Failure {
                class: FailureClass::ForeignSecondary,
                message: "the account already has a secondary Auth Token that this rotation did not create".into(),
            })
        }
        Err(e) => Err(failure(&e, FailureClass::AuthenticationFailed)),
    }
}

/// The account's primary Auth Token as Twilio names it to `creds` (which must authenticate):
/// the old token until promotion, the new one after.
pub async fn primary(
    client: &TwilioClient,
    creds: &Credentials,
) -> Result<Option<SecretString>, Failure> {
    client
        .fetch_account(creds)
        .await
        .map(|a| a.auth_token)
        .map_err(|e| failure(&e, FailureClass::AuthenticationFailed))
}

/// Verify: the new token authenticates a cheap read.
pub async fn verify(client: &TwilioClient, new: &Credentials) -> Result<(), Failure> {
    client
        .fetch_account(new)
        .await
        .map(|_| ())
        .map_err(|e| failure(&e, FailureClass::NewTokenRefused))
}

/// Promote, authenticating with the new token (valid as secondary before, as primary after).
/// After a crash or an unknown outcome the call is repeated: Twilio then answers 404 (nothing to
/// promote), and the promotion is confirmed from which token still works.
pub async fn promote(
    client: &TwilioClient,
    new: &Credentials,
    old: &Credentials,
) -> Result<(), Failure> {
    match client.promote_secondary_auth_token(new).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => confirm_promoted(client, new, old).await,
        Err(e) => Err(failure(&e, FailureClass::AuthenticationFailed)),
    }
}

async fn confirm_promoted(
    client: &TwilioClient,
    new: &Credentials,
    old: &Credentials,
) -> Result<(), Failure> {
    client
        .fetch_account(new)
        .await
        .map_err(|e| failure(&e, FailureClass::NewTokenRefused))?;
    match client.fetch_account(old).await {
        Err(e) if e.kind() == ErrorKind::AuthenticationFailed => Ok(()),
        Err(e) => Err(failure(&e, FailureClass::TwilioUnavailable)),
        Ok(_) => Err(Failure {
            class: FailureClass::TwilioRejected,
            message: "Twilio has no secondary token to promote, yet the old token still works: the new token is not the account's primary (was the secondary deleted outside the operator?)".into(),
        }),
    }
}

/// Abort: delete the unused secondary; already gone is fine.
pub async fn delete_secondary(
    client: &TwilioClient,
    operator: &Credentials,
) -> Result<(), Failure> {
    match client.delete_secondary_auth_token(operator).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(failure(&e, FailureClass::AuthenticationFailed)),
    }
}

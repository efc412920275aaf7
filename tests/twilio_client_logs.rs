//! No secret in any log line, error or `Debug` output of the Twilio client, with everything
//! logged at TRACE while every operation runs, failures included.
//!
//! The only test in this binary, with a process-wide subscriber: tracing caches callsite
//! interest globally, so a thread-local subscriber next to tests running in parallel would miss
//! events and prove nothing.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sandbox::twilio::{Endpoint as EmuEndpoint, Fault, TwilioSandbox};
use serde_json::json;
use token_rotator::secret::SecretString;
use token_rotator::twilio::{Credentials, ErrorKind, RetryPolicy, TwilioClient, TwilioConfig};
use url::Url;

/// A `MakeWriter` appending to a shared buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

#[tokio::test]
async fn no_secret_reaches_logs_errors_or_debug_output() {
    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(buffer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let sb = TwilioSandbox::start().await.unwrap();
    let (sid, token) = sb.create_account();
    let client = TwilioClient::new(TwilioConfig {
        base_url: Some(Url::parse(&sb.base_url()).unwrap()),
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        },
        ..TwilioConfig::default()
    })
    .unwrap();
    let creds = Credentials::auth_token(&sid, SecretString::new(token.clone()));
    let mut secrets = vec![token];
    let mut shown = String::new();
    let mut show = |s: String| {
        shown.push_str(&s);
        shown.push('\n');
    };

    let account = client.fetch_account(&creds).await.unwrap();
    show(format!("{account:?}"));
    let secondary = client.create_secondary_auth_token(&creds).await.unwrap();
    secrets.push(secondary.secondary_auth_token.expose().to_owned());
    show(format!("{secondary:?}"));
    // Failures too: a 429 and a 5xx retried, a 400, an ambiguous POST, a 401, a 404.
    sb.set_fault(EmuEndpoint::AccountFetch, Fault::too_many_requests(1));
    client.fetch_account(&creds).await.unwrap();
    sb.set_fault(EmuEndpoint::AccountFetch, Fault::server_error(503, 1));
    client.fetch_account(&creds).await.unwrap();
    let err = client
        .create_secondary_auth_token(&creds)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SecondaryAlreadyExists);
    show(format!("{err} {err:?}"));
    sb.set_fault(EmuEndpoint::Promote, Fault::drop_after_apply(1));
    let err = client
        .promote_secondary_auth_token(&creds)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown);
    show(format!("{err} {err:?}"));
    let err = client.fetch_account(&creds).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthenticationFailed);
    show(format!("{err} {err:?}"));

    let creds = Credentials::auth_token(&sid, secondary.secondary_auth_token.clone());
    show(format!("{creds:?} {client:?}"));
    let account = client.fetch_account(&creds).await.unwrap();
    show(format!("{account:?}"));
    let key = client.create_api_key(&creds, "k1").await.unwrap();
    secrets.push(key.secret.expose().to_owned());
    show(format!("{key:?}"));
    let iam_key = client
        .iam_create_api_key(&creds, "k2", Some(&json!({ "allow": [] })))
        .await
        .unwrap();
    secrets.push(iam_key.secret.expose().to_owned());
    show(format!("{iam_key:?}"));
    show(format!("{:?}", client.list_api_keys(&creds).await.unwrap()));
    show(format!(
        "{:?}",
        client.iam_list_api_keys(&creds).await.unwrap()
    ));
    show(format!(
        "{:?}",
        client.fetch_api_key(&creds, &key.sid).await.unwrap()
    ));
    show(format!(
        "{:?}",
        client
            .iam_fetch_api_key(&creds, &iam_key.sid)
            .await
            .unwrap()
    ));
    let key_creds = Credentials::api_key(&sid, &key.sid, key.secret.clone());
    let err = client
        .iam_create_api_key(&key_creds, "k3", None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthenticationFailed);
    show(format!("{err} {err:?}"));
    client.delete_api_key(&creds, &key.sid).await.unwrap();
    client
        .iam_delete_api_key(&creds, &iam_key.sid)
        .await
        .unwrap();
    let err = client.fetch_api_key(&creds, &key.sid).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    show(format!("{err} {err:?}"));
    let err = client
        .delete_secondary_auth_token(&creds)
        .await
        .unwrap_err();
    show(format!("{err} {err:?}"));
    let _ = show;

    let log = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    // The log really holds the client's spans and events.
    for expected in [
        "twilio_call{endpoint=\"create_secondary_auth_token\"",
        "twilio_call{endpoint=\"iam_create_api_key\"",
        "twilio attempt answered",
        "twilio call succeeded",
        "twilio call failed",
        "retrying twilio call",
        "status=201",
    ] {
        assert!(log.contains(expected), "{expected:?} not logged:\n{log}");
    }
    assert_eq!(secrets.len(), 4);
    for secret in &secrets {
        assert!(secret.len() >= 32, "not a real secret: {secret:?}");
        assert!(
            !log.contains(secret.as_str()),
            "a secret leaked into the log"
        );
        assert!(
            !shown.contains(secret.as_str()),
            "a secret leaked into Debug/Display:\n{shown}"
        );
    }
}

//! Spec conformance: every Twilio client operation runs against Stoplight Prism mocking the
//! Twilio OpenAPI specs in `sandbox/twilio-oai/`, one prism per spec, with `--errors`, so any
//! request that violates the spec comes back as an error status (and fails the call), and the
//! prism log must show no validation error.
//!
//! Two spec defects are patched in a temporary copy, nothing else:
//! * accounts v1: the spec predates `SuppressEmailNotification` (twilio-python 9.11+ sends it as
//!   a form field on `POST /v1/AuthTokens/Secondary` and `/Promote` and as a query parameter on
//!   `DELETE /v1/AuthTokens/Secondary`), so without the patch prism refuses any body there.
//!   The unpatched spec is exercised too, with the parameter switched off.
//! * 2010 API: the key list declares `format: uri` for `uri`, `first_page_uri`, `next_page_uri`,
//!   `previous_page_uri`, which Twilio fills with relative references; prism `--errors` also
//!   validates its own responses and rejects the spec's own example, so those become
//!   `uri-reference`.

use std::fs::File;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use token_rotator::secret::SecretString;
use token_rotator::twilio::{
    Credentials, DeleteOutcome, ErrorKind, Product, RetryPolicy, TwilioClient, TwilioConfig,
    TwilioError,
};
use url::Url;

const ACCOUNT: &str = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const KEY: &str = "SKaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn spec_path(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sandbox")
        .join("twilio-oai")
        .join(file)
}

fn load_spec(file: &str) -> Value {
    let text =
        std::fs::read_to_string(spec_path(file)).unwrap_or_else(|e| panic!("read {file}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// A scratch directory for patched specs and prism logs, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "twilio-client-prism-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write_spec(&self, name: &str, spec: &Value) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, serde_json::to_vec(spec).unwrap()).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One `prism mock --errors` process; killed on drop.
struct Prism {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Prism {
    fn start(spec: &Path, scratch: &Scratch) -> Prism {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = scratch.0.join(format!("prism-{port}.log"));
        let out = File::create(&log).unwrap();
        let child = Command::new(sandbox::tools::prism())
            .args([
                "mock",
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "--errors",
            ])
            .arg(spec)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start prism");
        let mut prism = Prism { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = prism.child.try_wait().unwrap() {
                panic!(
                    "prism exited with {status} before listening:\n{}",
                    prism.log()
                );
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() && prism.log().contains("listening")
            {
                return prism;
            }
            assert!(
                Instant::now() < deadline,
                "prism did not start listening on {port}:\n{}",
                prism.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn url(&self) -> Url {
        Url::parse(&format!("http://127.0.0.1:{}", self.port)).unwrap()
    }

    fn log(&self) -> String {
        let mut s = String::new();
        File::open(&self.log)
            .and_then(|mut f| f.read_to_string(&mut s))
            .unwrap();
        s
    }

    /// Request and response validation both happen with `--errors`; any failure shows as a
    /// "✖" line in prism's log.
    fn assert_no_violations(&self) {
        let log = self.log();
        let bad: Vec<&str> = log
            .lines()
            .filter(|l| l.contains('✖') || l.contains("did not pass the validation rules"))
            .collect();
        assert!(
            bad.is_empty(),
            "prism reported violations:\n{}",
            bad.join("\n")
        );
        let received = log.matches("Request received").count();
        let passed = log
            .matches("The request passed the validation rules")
            .count();
        assert!(received > 0, "prism saw no request:\n{log}");
        assert_eq!(received, passed, "not every request was validated:\n{log}");
    }
}

impl Drop for Prism {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client(product: Product, prism: &Prism, suppress_email_notification: bool) -> TwilioClient {
    let config = TwilioConfig {
        suppress_email_notification,
        // A prism error must surface, not be retried away.
        retry: RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        },
        request_timeout: Duration::from_secs(20),
        ..TwilioConfig::default()
    }
    .with_product_base_url(product, prism.url());
    TwilioClient::new(config).unwrap()
}

fn auth_token_creds() -> Credentials {
    Credentials::auth_token(
        ACCOUNT,
        SecretString::new("0123456789abcdef0123456789abcdef"),
    )
}

fn api_key_creds() -> Credentials {
    Credentials::api_key(
        ACCOUNT,
        KEY,
        SecretString::new("keysecret0123456789keysecret0123"),
    )
}

fn ok<T>(what: &str, r: Result<T, TwilioError>) -> T {
    r.unwrap_or_else(|e| panic!("{what} failed against prism: {e}"))
}

/// Adds `SuppressEmailNotification` to the AuthTokens operations as twilio-python 9.11+ sends it.
fn accounts_spec_with_suppress_email_notification() -> Value {
    let mut spec = load_spec("twilio_accounts_v1.json");
    let form_body = json!({
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": { "SuppressEmailNotification": { "type": "boolean" } }
                }
            }
        }
    });
    spec["paths"]["/v1/AuthTokens/Secondary"]["post"]["requestBody"] = form_body.clone();
    spec["paths"]["/v1/AuthTokens/Promote"]["post"]["requestBody"] = form_body;
    spec["paths"]["/v1/AuthTokens/Secondary"]["delete"]["parameters"] = json!([{
        "name": "SuppressEmailNotification",
        "in": "query",
        "schema": { "type": "boolean" }
    }]);
    spec
}

async fn exercise_auth_tokens(client: &TwilioClient) {
    let creds = auth_token_creds();
    let secondary = ok(
        "create_secondary_auth_token",
        client.create_secondary_auth_token(&creds).await,
    );
    assert_eq!(secondary.account_sid.as_deref(), Some(ACCOUNT));
    assert_eq!(
        secondary.secondary_auth_token.expose(),
        "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
    );
    assert!(secondary.date_created.is_some());

    let promoted = ok(
        "promote_secondary_auth_token",
        client.promote_secondary_auth_token(&creds).await,
    );
    assert_eq!(
        promoted.auth_token.expose(),
        "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
    );

    let deleted = ok(
        "delete_secondary_auth_token",
        client.delete_secondary_auth_token(&creds).await,
    );
    assert_eq!(deleted, DeleteOutcome::Deleted);
}

#[tokio::test]
async fn accounts_v1_auth_token_operations_conform() {
    let scratch = Scratch::new("accounts");
    let spec = scratch.write_spec(
        "twilio_accounts_v1.json",
        &accounts_spec_with_suppress_email_notification(),
    );
    let prism = Prism::start(&spec, &scratch);
    exercise_auth_tokens(&client(Product::Accounts, &prism, true)).await;
    exercise_auth_tokens(&client(Product::Accounts, &prism, false)).await;
    prism.assert_no_violations();
    let log = prism.log();
    assert!(
        log.contains("post /v1/AuthTokens/Promote")
            && log.contains("delete /v1/AuthTokens/Secondary"),
        "{log}"
    );
}

#[tokio::test]
async fn accounts_v1_unpatched_spec_accepts_requests_without_suppress_parameter() {
    let scratch = Scratch::new("accounts-orig");
    let prism = Prism::start(&spec_path("twilio_accounts_v1.json"), &scratch);
    exercise_auth_tokens(&client(Product::Accounts, &prism, false)).await;
    prism.assert_no_violations();

    // Why the patched copy exists: the original spec allows no body on this POST.
    let err = client(Product::Accounts, &prism, true)
        .create_secondary_auth_token(&auth_token_creds())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(415), "{err}");
}

#[tokio::test]
async fn api_v2010_account_and_key_operations_conform() {
    let scratch = Scratch::new("api");
    let mut spec = load_spec("twilio_api_v2010.json");
    let props = &mut spec["paths"]["/2010-04-01/Accounts/{AccountSid}/Keys.json"]["get"]
        ["responses"]["200"]["content"]["application/json"]["schema"]["properties"];
    for name in [
        "uri",
        "first_page_uri",
        "next_page_uri",
        "previous_page_uri",
    ] {
        assert_eq!(props[name]["format"], "uri", "spec changed: {name}");
        props[name]["format"] = json!("uri-reference");
    }
    let spec = scratch.write_spec("twilio_api_v2010.json", &spec);
    let prism = Prism::start(&spec, &scratch);
    let client = client(Product::Api, &prism, true);

    for creds in [auth_token_creds(), api_key_creds()] {
        let account = ok("fetch_account", client.fetch_account(&creds).await);
        assert_eq!(account.sid, ACCOUNT);
        assert_eq!(account.auth_token.as_ref().unwrap().expose(), "auth_token");
        // The API key rotation's verification read.
        ok("fetch_balance", client.fetch_balance(&creds).await);
    }
    let creds = auth_token_creds();

    let key = ok(
        "create_api_key",
        client.create_api_key(&creds, "rotator-1").await,
    );
    assert_eq!(key.sid, KEY);
    assert_eq!(key.secret.expose(), "foobar");
    ok(
        "create_api_key (no name)",
        client.create_api_key(&creds, "").await,
    );

    // Prism answers with one of the spec's examples, which may be the empty page.
    let keys = ok("list_api_keys", client.list_api_keys(&creds).await);
    assert!(keys.iter().all(|k| k.sid == KEY), "{keys:?}");

    let fetched = ok("fetch_api_key", client.fetch_api_key(&creds, KEY).await);
    assert_eq!(fetched.friendly_name.as_deref(), Some("foo"));
    assert!(fetched.date_created.is_some());

    let deleted = ok("delete_api_key", client.delete_api_key(&creds, KEY).await);
    assert_eq!(deleted, DeleteOutcome::Deleted);

    prism.assert_no_violations();
    let log = prism.log();
    for op in [
        "get /2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.json",
        "get /2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Balance.json",
        "post /2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Keys.json",
        "get /2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Keys.json",
        "delete /2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Keys/SKaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.json",
    ] {
        assert!(log.contains(op), "prism never saw {op}:\n{log}");
    }
}

#[tokio::test]
async fn iam_v1_key_operations_conform() {
    let scratch = Scratch::new("iam");
    let prism = Prism::start(&spec_path("twilio_iam_v1.json"), &scratch);
    let client = client(Product::Iam, &prism, true);
    let creds = auth_token_creds();

    let standard = ok(
        "iam_create_api_key (standard)",
        client
            .iam_create_api_key(&creds, "rotator-standard", None)
            .await,
    );
    assert_eq!(standard.sid, KEY);
    assert!(!standard.secret.is_empty());

    let policy = json!({ "allow": ["/twilio/messaging/messages/read"] });
    let restricted = ok(
        "iam_create_api_key (restricted)",
        client
            .iam_create_api_key(&creds, "rotator-restricted", Some(&policy))
            .await,
    );
    assert!(!restricted.secret.is_empty());

    // Prism answers with one of the spec's examples, which may be the empty page.
    let keys = ok("iam_list_api_keys", client.iam_list_api_keys(&creds).await);
    assert!(keys.iter().all(|k| k.sid.starts_with("SK")), "{keys:?}");

    let fetched = ok(
        "iam_fetch_api_key",
        client.iam_fetch_api_key(&creds, KEY).await,
    );
    assert_eq!(fetched.sid, KEY);

    let deleted = ok(
        "iam_delete_api_key",
        client.iam_delete_api_key(&creds, KEY).await,
    );
    assert_eq!(deleted, DeleteOutcome::Deleted);

    // Rejected before anything is sent.
    let bad = client
        .iam_create_api_key(&creds, "x", Some(&json!(["not", "an", "object"])))
        .await
        .unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::Permanent);

    prism.assert_no_violations();
    let log = prism.log();
    for op in ["post /v1/Keys", "get /v1/Keys", "delete /v1/Keys/SK"] {
        assert!(log.contains(op), "prism never saw {op}:\n{log}");
    }
}

//! Response-schema conformance: every endpoint's responses (success and error) pass through a
//! Prism validation proxy (`prism proxy <spec> <emulator>`), one per spec file. Prism forwards
//! the emulator's response and lists every mismatch with the spec (request and response) in its
//! `sl-violations` header; the test accepts none except two documented ones:
//!
//! - The specs declare no error responses, so for 4xx/5xx Prism can only warn that the status is
//!   not in the document; those bodies are checked here against Twilio's error shape instead.
//! - The 2010 list's `uri`, `first_page_uri`, `next_page_uri`, `previous_page_uri` are declared
//!   `format: uri`, but Twilio returns paths relative to `https://api.twilio.com` and
//!   twilio-python joins them onto its base URL (`Domain.absolute_url`), so the emulator keeps
//!   them relative and that exact format violation is allowed.
//!
//! (Not `--errors`: with it Prism replaces a violating response by its own 500, hiding the body.)

mod twilio_support;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sandbox::twilio::{KeyKind, TwilioSandbox};
use serde_json::Value;
use twilio_support::{call, Resp};

struct Prism {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Drop for Prism {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Kept for diagnosis when the test failed.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spec(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("twilio-oai")
        .join(name)
}

fn start_prism(spec_file: &str, upstream: &str) -> Prism {
    let port = free_port();
    let log = std::env::temp_dir().join(format!("twilio-prism-{}-{port}.log", std::process::id()));
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(sandbox::tools::prism())
        .arg("proxy")
        .arg(spec(spec_file))
        .arg(upstream)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("start prism");
    Prism {
        child,
        base: format!("http://127.0.0.1:{port}"),
        log,
    }
}

fn wait_ready(p: &mut Prism) {
    let addr = p.base.trim_start_matches("http://").to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    while TcpStream::connect(&addr).is_err() {
        if let Some(status) = p.child.try_wait().unwrap() {
            panic!(
                "prism exited with {status}: {}",
                std::fs::read_to_string(&p.log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "prism did not start listening");
        std::thread::sleep(Duration::from_millis(100));
    }
}

const RELATIVE_URI_FIELDS: [&str; 4] = [
    "uri",
    "first_page_uri",
    "next_page_uri",
    "previous_page_uri",
];

/// Asserts that `r` came from the emulator with `status` and that Prism found no violation
/// beyond the documented ones (see the module comment).
#[track_caller]
fn conforms(r: &Resp, status: u16, what: &str) {
    check(r, status, what, false)
}

/// Like `conforms`, for the 2010 key list with its relative `*_uri` fields.
#[track_caller]
fn conforms_2010_list(r: &Resp, what: &str) {
    check(r, 200, what, true)
}

#[track_caller]
fn check(r: &Resp, status: u16, what: &str, relative_uris: bool) {
    let ct = r
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        !ct.contains("problem+json"),
        "{what}: Prism answered by itself: {}",
        r.body
    );
    assert_eq!(r.status, status, "{what}: {}", r.body);
    let violations: Vec<Value> = r
        .headers
        .get("sl-violations")
        .map(|v| serde_json::from_str(v.to_str().unwrap()).unwrap())
        .unwrap_or_default();
    for v in &violations {
        let message = v["message"].as_str().unwrap_or("");
        let unmatched_error_status =
            status >= 400 && message.starts_with("Unable to match the returned status code");
        let relative_uri = relative_uris
            && v["code"] == "format"
            && v["location"].as_array().is_some_and(|l| {
                l.len() == 3
                    && l[0] == "response"
                    && l[1] == "body"
                    && RELATIVE_URI_FIELDS.contains(&l[2].as_str().unwrap_or(""))
            })
            && message.ends_with("must match format \"uri\"");
        assert!(
            unmatched_error_status || relative_uri,
            "{what}: violation {v}"
        );
    }
    if relative_uris {
        for f in RELATIVE_URI_FIELDS {
            let u = &r.body[f];
            assert!(
                u.is_null() || u.as_str().is_some_and(|s| s.starts_with("/2010-04-01/")),
                "{what}: {f} = {u}"
            );
        }
    }
    if status >= 400 {
        let b = &r.body;
        let keys: Vec<&str> = b.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["code", "message", "more_info", "status"], "{what}");
        assert_eq!(b["status"].as_u64(), Some(u64::from(status)), "{what}");
        let code = b["code"].as_u64().unwrap();
        assert_eq!(
            b["more_info"].as_str().unwrap(),
            format!("https://www.twilio.com/docs/errors/{code}"),
            "{what}"
        );
        assert!(!b["message"].as_str().unwrap().is_empty(), "{what}");
    }
}

/// Path and query of an absolute URL (to send a returned next-page URL through Prism).
fn path_of(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    let p = &after_scheme[after_scheme.find('/').unwrap()..];
    p.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_matches_the_openapi_schemas() {
    let tw = TwilioSandbox::start().await.unwrap();
    let emu = tw.base_url();
    let mut accounts = start_prism("twilio_accounts_v1.json", &emu);
    let mut api = start_prism("twilio_api_v2010.json", &emu);
    let mut iam = start_prism("twilio_iam_v1.json", &emu);
    for p in [&mut accounts, &mut api, &mut iam] {
        wait_ready(p);
    }
    let (ac, tok) = tw.create_account();
    let (sub, _) = tw.add_subaccount(&ac);
    let (other, otok) = tw.create_account();
    let (std_sk, std_secret) = tw.create_key(&ac, KeyKind::Standard, "std");
    let a = Some((ac.as_str(), tok.as_str()));
    let bad = Some((ac.as_str(), "ffffffffffffffffffffffffffffffff"));
    let std = Some((std_sk.as_str(), std_secret.as_str()));

    // accounts v1
    let ab = accounts.base.clone();
    let r = call(&ab, "POST", "/v1/AuthTokens/Secondary", a, &[]).await;
    conforms(&r, 201, "create secondary");
    // This spec version declares no request body here (a form body would be a request
    // violation), so send none.
    let r = call(&ab, "POST", "/v1/AuthTokens/Secondary", a, &[]).await;
    conforms(&r, 400, "second secondary");
    let r = call(&ab, "POST", "/v1/AuthTokens/Secondary", bad, &[]).await;
    conforms(&r, 401, "bad credentials");
    let r = call(&ab, "POST", "/v1/AuthTokens/Promote", a, &[]).await;
    conforms(&r, 200, "promote");
    let tok = tw.primary_token(&ac).unwrap();
    let a = Some((ac.as_str(), tok.as_str()));
    let r = call(&ab, "POST", "/v1/AuthTokens/Promote", a, &[]).await;
    conforms(&r, 404, "promote without secondary");
    let r = call(&ab, "DELETE", "/v1/AuthTokens/Secondary", a, &[]).await;
    conforms(&r, 404, "delete missing secondary");
    call(&ab, "POST", "/v1/AuthTokens/Secondary", a, &[]).await;
    let r = call(
        &ab,
        "DELETE",
        "/v1/AuthTokens/Secondary?SuppressEmailNotification=true",
        a,
        &[],
    )
    .await;
    conforms(&r, 204, "delete secondary");

    // api v2010
    let pb = api.base.clone();
    let acct = |sid: &str| format!("/2010-04-01/Accounts/{sid}.json");
    let keys = format!("/2010-04-01/Accounts/{ac}/Keys.json");
    conforms(
        &call(&pb, "GET", &acct(&ac), a, &[]).await,
        200,
        "fetch account",
    );
    conforms(
        &call(&pb, "GET", &acct(&sub), a, &[]).await,
        200,
        "fetch subaccount",
    );
    conforms(
        &call(&pb, "GET", &acct(&ac), Some((&other, &otok)), &[]).await,
        404,
        "foreign account",
    );
    conforms(
        &call(&pb, "GET", &acct(&ac), bad, &[]).await,
        401,
        "account bad credentials",
    );
    conforms(
        &call(&pb, "GET", &acct(&ac), std, &[]).await,
        401,
        "standard key reads account",
    );
    conforms(
        &call(
            &pb,
            "GET",
            &format!("/2010-04-01/Accounts/{ac}/Balance.json"),
            std,
            &[],
        )
        .await,
        200,
        "balance",
    );
    conforms_2010_list(&call(&pb, "GET", &keys, a, &[]).await, "list keys");
    let r = call(&pb, "POST", &keys, a, &[("FriendlyName", "k1")]).await;
    conforms(&r, 201, "create key");
    let sk = r.body["sid"].as_str().unwrap().to_string();
    let r = call(&pb, "POST", &keys, a, &[]).await;
    conforms(&r, 201, "create key without name");
    assert!(r.body["friendly_name"].is_null());
    conforms(
        &call(&pb, "POST", &keys, std, &[]).await,
        401,
        "standard key creates key",
    );
    let r = call(&pb, "GET", &format!("{keys}?PageSize=2"), a, &[]).await;
    conforms_2010_list(&r, "list keys page 0");
    let next = r.body["next_page_uri"]
        .as_str()
        .expect("more pages")
        .to_string();
    let r = call(&pb, "GET", &next, a, &[]).await;
    conforms_2010_list(&r, "list keys page 1");
    assert!(r.body["previous_page_uri"].is_string());
    let key = format!("/2010-04-01/Accounts/{ac}/Keys/{sk}.json");
    conforms(&call(&pb, "GET", &key, a, &[]).await, 200, "fetch key");
    conforms(
        &call(&pb, "POST", &key, a, &[("FriendlyName", "k2")]).await,
        200,
        "update key",
    );
    conforms(&call(&pb, "DELETE", &key, a, &[]).await, 204, "delete key");
    conforms(
        &call(&pb, "GET", &key, a, &[]).await,
        404,
        "fetch deleted key",
    );

    // iam v1
    let ib = iam.base.clone();
    let list = format!("/v1/Keys?AccountSid={ac}");
    let r = call(
        &ib,
        "POST",
        "/v1/Keys",
        a,
        &[("AccountSid", &ac), ("FriendlyName", "iam")],
    )
    .await;
    conforms(&r, 201, "iam create standard");
    let r = call(
        &ib,
        "POST",
        "/v1/Keys",
        a,
        &[
            ("AccountSid", &ac),
            ("FriendlyName", "restricted"),
            ("KeyType", "restricted"),
            ("Policy", r#"{"allow":["/twilio/messaging/messages/read"]}"#),
        ],
    )
    .await;
    conforms(&r, 201, "iam create restricted");
    let rk = r.body["sid"].as_str().unwrap().to_string();
    let r = call(
        &ib,
        "POST",
        "/v1/Keys",
        a,
        &[("AccountSid", &ac), ("KeyType", "restricted")],
    )
    .await;
    conforms(&r, 400, "iam restricted without policy");
    conforms(
        &call(&ib, "POST", "/v1/Keys", std, &[("AccountSid", &ac)]).await,
        401,
        "iam std create",
    );
    conforms(
        &call(&ib, "GET", &list, std, &[]).await,
        401,
        "iam std list",
    );
    let r = call(&ib, "GET", &format!("{list}&PageSize=1"), a, &[]).await;
    conforms(&r, 200, "iam list page 0");
    let next = path_of(
        r.body["meta"]["next_page_url"]
            .as_str()
            .expect("more pages"),
    );
    let r = call(&ib, "GET", &next, a, &[]).await;
    conforms(&r, 200, "iam list page 1");
    assert!(r.body["meta"]["previous_page_url"].is_string());
    let rkey = format!("/v1/Keys/{rk}");
    conforms(&call(&ib, "GET", &rkey, a, &[]).await, 200, "iam fetch");
    conforms(
        &call(
            &ib,
            "POST",
            &rkey,
            a,
            &[("FriendlyName", "r2"), ("Policy", r#"{"allow":[]}"#)],
        )
        .await,
        200,
        "iam update",
    );
    conforms(
        &call(
            &ib,
            "POST",
            &format!("/v1/Keys/{std_sk}"),
            a,
            &[("Policy", "{}")],
        )
        .await,
        400,
        "iam policy on standard",
    );
    conforms(&call(&ib, "DELETE", &rkey, a, &[]).await, 204, "iam delete");
    conforms(
        &call(&ib, "GET", &rkey, a, &[]).await,
        404,
        "iam fetch deleted",
    );
    conforms(
        &call(&ib, "GET", &list, Some((&other, &otok)), &[]).await,
        401,
        "iam foreign account",
    );

    // Every request above reached the emulator (Prism did not answer any by itself).
    assert_eq!(tw.request_log().len(), 37);
}

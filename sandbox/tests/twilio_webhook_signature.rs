//! `TwilioSandbox::sign_webhook` against the reference: the official Python library's
//! `twilio.request_validator.RequestValidator` (venv from `scripts/install-tools.sh`). The
//! signature must be the one Python computes with the token that is primary when signing, and
//! Python's `validate()` must accept it.

use sandbox::twilio::TwilioSandbox;
use serde_json::{json, Value};

/// Runs `RequestValidator` over `cases` (`{token, url, params: [[name, value]...], ours}`) and
/// returns, per case, `{computed, valid, valid_with_other_token}`.
const REFERENCE: &str = r#"
import json, sys
from twilio.request_validator import RequestValidator

class MultiDict(dict):
    """Repeated parameters, the way Flask's MultiDict hands them to the validator."""
    def getall(self, name):
        return self[name]

out = []
for case in json.load(sys.stdin):
    grouped = {}
    for name, value in case["params"]:
        grouped.setdefault(name, []).append(value)
    if any(len(v) > 1 for v in grouped.values()):
        params = MultiDict(grouped)
    else:
        params = {name: values[0] for name, values in grouped.items()}
    v = RequestValidator(case["token"])
    out.append({
        "computed": v.compute_signature(case["url"], params),
        "valid": v.validate(case["url"], params, case["ours"]),
        "valid_with_other_token": RequestValidator(case["token"] + "0").validate(
            case["url"], params, case["ours"]),
    })
print(json.dumps(out))
"#;

type Case = (&'static str, Vec<(&'static str, &'static str)>);

/// A request the emulator signed: the token expected to have signed it, the URL, the
/// parameters, and the emulator's signature.
struct Signed {
    token: String,
    url: &'static str,
    params: Vec<(&'static str, &'static str)>,
    ours: String,
}

fn cases() -> Vec<Case> {
    vec![
        // A voice webhook with a query string, parameters in Twilio's usual order.
        (
            "https://mycompany.com/myapp.php?foo=1&bar=2",
            vec![
                ("CallSid", "CA1234567890ABCDE"),
                ("Caller", "+12349013030"),
                ("Digits", "1234"),
                ("From", "+12349013030"),
                ("To", "+18005551212"),
            ],
        ),
        // Out of order; upper case sorts before lower case and `_` between them (code point
        // order, not alphabetical); a repeated name whose values need sorting, one duplicated.
        (
            "https://example.com/sms",
            vec![
                ("to", "+15005550006"),
                ("Body", "second"),
                ("_meta", "x"),
                ("MediaUrl", "https://b.example/2.png"),
                ("MediaUrl", "https://a.example/1.png"),
                ("MediaUrl", "https://b.example/2.png"),
                ("AccountSid", "AC00000000000000000000000000000000"),
                ("body", "first"),
            ],
        ),
        // Unicode in the URL, names and values (names sorted by code point: Z < é < ñ).
        (
            "https://example.com/hooks/caf\u{e9}?lang=\u{fc}",
            vec![
                ("\u{f1}ame", "Z\u{fc}rich"),
                ("Body", "h\u{e9}llo \u{1f44b} \u{2013} \u{fc}n\u{ef}code"),
                ("\u{e9}t\u{e9}", "\u{65e5}\u{672c}"),
                ("Zone", "\u{c5}"),
            ],
        ),
    ]
}

async fn reference(cases: &[Value]) -> Vec<Value> {
    use tokio::io::AsyncWriteExt;
    let python = sandbox::tools::python();
    let mut child = tokio::process::Command::new(&python)
        .args(["-c", REFERENCE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(serde_json::to_string(cases).unwrap().as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "RequestValidator script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn post(base: &str, path: &str, sid: &str, token: &str) -> Value {
    sandbox::kube::ensure_crypto_provider();
    let resp = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .basic_auth(sid, Some(token))
        .form(&[("SuppressEmailNotification", "true")])
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "POST {path}: {}", resp.status());
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_webhook_matches_python_request_validator_with_the_primary_token() {
    let tw = TwilioSandbox::start().await.unwrap();
    let (sid, old) = tw.create_account();
    assert_eq!(tw.sign_webhook("AC_unknown", "https://x", &[]), None);

    let mut signed: Vec<Signed> = Vec::new();
    let all = cases();
    for (url, params) in &all {
        let sig = tw.sign_webhook(&sid, url, params).unwrap();
        signed.push(Signed {
            token: old.clone(),
            url,
            params: params.clone(),
            ours: sig,
        });
    }
    // A secondary token never signs.
    let created = post(&tw.base_url(), "/v1/AuthTokens/Secondary", &sid, &old).await;
    let new = created["secondary_auth_token"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    let (url, params) = &all[0];
    let sig = tw.sign_webhook(&sid, url, params).unwrap();
    signed.push(Signed {
        token: old.clone(),
        url,
        params: params.clone(),
        ours: sig,
    });
    // After promotion the new token signs.
    post(&tw.base_url(), "/v1/AuthTokens/Promote", &sid, &new).await;
    assert_eq!(tw.primary_token(&sid).as_deref(), Some(new.as_str()));
    for (url, params) in &all {
        let sig = tw.sign_webhook(&sid, url, params).unwrap();
        signed.push(Signed {
            token: new.clone(),
            url,
            params: params.clone(),
            ours: sig,
        });
    }

    let input: Vec<Value> = signed
        .iter()
        .map(|s| json!({"token": s.token, "url": s.url, "params": s.params, "ours": s.ours}))
        .collect();
    let results = reference(&input).await;
    assert_eq!(results.len(), signed.len());
    for (s, r) in signed.iter().zip(&results) {
        let (token, url, params, ours) = (&s.token, s.url, &s.params, &s.ours);
        let who = if *token == old { "old" } else { "new" };
        assert_eq!(
            r["computed"].as_str(),
            Some(ours.as_str()),
            "{url} {params:?} signed with the {who} token"
        );
        assert_eq!(r["valid"], json!(true), "{url}: validate() accepts ours");
        assert_eq!(
            r["valid_with_other_token"],
            json!(false),
            "{url}: another token does not validate it"
        );
        // The pure function is what the emulator signs with.
        assert_eq!(
            &sandbox::twilio::webhook_signature(token, url, params),
            ours
        );
    }
    // The same request is signed differently once the primary changed.
    assert_ne!(signed[0].ours, signed[4].ours);
    assert_eq!(signed[0].ours, signed[3].ours);
    // Sorting matters: a different order of the same pairs gives the same signature, a
    // different value another one.
    let (url, params) = &all[1];
    let mut reversed = params.clone();
    reversed.reverse();
    assert_eq!(
        tw.sign_webhook(&sid, url, &reversed),
        tw.sign_webhook(&sid, url, params)
    );
    assert_ne!(
        tw.sign_webhook(&sid, url, &[("Body", "second")]),
        tw.sign_webhook(&sid, url, &[("Body", "seconD")])
    );
}

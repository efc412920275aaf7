//! The generated CRD rejects bad TokenRotations up front, with a message that says what to fix:
//! applied with the real kubectl to the sandbox API server, which enforces the CRD's OpenAPI
//! schema and CEL rules.

use sandbox::kube::ApiServer;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

const SID: &str = "AC0123456789abcdef0123456789abcdef";

async fn kubectl(kubeconfig: &std::path::Path, args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = Command::new(sandbox::tools::kubectl())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .await
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn manifest(name: &str, spec: serde_json::Value) -> String {
    serde_json::to_string(&serde_json::json!({
        "apiVersion": "tokenrotator.io/v1alpha1",
        "kind": "TokenRotation",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec
    }))
    .unwrap()
}

fn valid_spec() -> serde_json::Value {
    serde_json::json!({
        "twilio": {"accountSid": SID, "credentialsSecretRef": {"name": "admin", "key": "authToken"}},
        "authToken": {},
        "secrets": [{"name": "creds", "tokenKey": "TWILIO_AUTH_TOKEN",
                     "previousTokenKey": "TWILIO_PREVIOUS_AUTH_TOKEN", "accountSidKey": "TWILIO_ACCOUNT_SID"}]
    })
}

/// An API key rotation managed with a Main key, with a restricted-key policy.
fn key_spec() -> serde_json::Value {
    serde_json::json!({
        "twilio": {"accountSid": SID, "credentialsSecretRef": {"name": "admin", "key": "secret", "keySidKey": "sid"}},
        "apiKey": {"retainPrevious": 2, "policy": {"allow": ["/twilio/messaging/messages/read"]}},
        "secrets": [{"name": "creds", "tokenKey": "TWILIO_API_SECRET", "keySidKey": "TWILIO_API_KEY",
                     "accountSidKey": "TWILIO_ACCOUNT_SID"}]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_rejects_bad_specs_with_a_message_naming_the_fix() {
    let api = ApiServer::start().await.unwrap();
    let dir = std::env::temp_dir().join(format!("tr-crd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kc = dir.join("kubeconfig");
    std::fs::write(&kc, api.kubeconfig_yaml()).unwrap();
    let crd = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/tokenrotations.tokenrotator.io.yaml"
    ))
    .unwrap();
    let (ok, out) = kubectl(&kc, &["apply", "-f", "-"], &crd).await;
    assert!(ok, "{out}");

    let (ok, out) = kubectl(&kc, &["apply", "-f", "-"], &manifest("good", valid_spec())).await;
    assert!(ok, "a valid TokenRotation is accepted: {out}");
    let mut windowed = valid_spec();
    windowed["windows"] = serde_json::json!([{"start": "0 2 * * 1-5", "duration": "4h"}]);
    let (ok, out) = kubectl(&kc, &["apply", "-f", "-"], &manifest("windowed", windowed)).await;
    assert!(ok, "rotation windows are accepted: {out}");
    let (ok, out) = kubectl(
        &kc,
        &["apply", "-f", "-"],
        &manifest("good-key", key_spec()),
    )
    .await;
    assert!(ok, "a valid API key TokenRotation is accepted: {out}");

    let mut cases: Vec<(&str, serde_json::Value, &str)> = vec![];
    let mut s = valid_spec();
    s["secrets"][0]["previousTokenKey"] = "TWILIO_AUTH_TOKEN".into();
    cases.push((
        "previous key equals token key",
        s,
        "previousTokenKey must differ from tokenKey",
    ));
    let mut s = valid_spec();
    s["twilio"]["accountSid"] = "SK0123".into();
    cases.push(("bad account SID", s, "spec.twilio.accountSid"));
    let mut s = valid_spec();
    s.as_object_mut().unwrap().remove("authToken");
    cases.push(("no credential kind", s, "set exactly one of spec.authToken"));
    let mut s = key_spec();
    s["authToken"] = serde_json::json!({});
    cases.push((
        "both credential kinds",
        s,
        "set exactly one of spec.authToken",
    ));
    let mut s = key_spec();
    s["secrets"][0].as_object_mut().unwrap().remove("keySidKey");
    cases.push((
        "API key without a key SID key",
        s,
        "with spec.apiKey every secret needs keySidKey",
    ));
    let mut s = valid_spec();
    s["secrets"][0]["keySidKey"] = "TWILIO_API_KEY".into();
    cases.push((
        "key SID key on an Auth Token rotation",
        s,
        "keySidKey is only for spec.apiKey",
    ));
    let mut s = key_spec();
    s["secrets"][0]["webhookTokensKey"] = "WEBHOOK".into();
    cases.push((
        "webhook tokens with an API key",
        s,
        "API keys cannot validate webhook signatures",
    ));
    let mut s = valid_spec();
    s["twilio"]["credentialsSecretRef"]["keySidKey"] = "sid".into();
    cases.push((
        "Main key credentials for an Auth Token rotation",
        s,
        "remove spec.twilio.credentialsSecretRef.keySidKey",
    ));
    let mut s = key_spec();
    s["apiKey"]["retainPrevious"] = 11.into();
    cases.push(("too many retained keys", s, "spec.apiKey.retainPrevious"));
    let mut s = key_spec();
    s["apiKey"]["policy"] = "read everything".into();
    cases.push(("policy that is not an object", s, "spec.apiKey.policy"));
    let mut s = valid_spec();
    s["secrets"] =
        serde_json::json!([{"name": "a", "tokenKey": "T"}, {"name": "a", "tokenKey": "U"}]);
    cases.push(("duplicate secret", s, "secret names must be unique"));
    let mut s = valid_spec();
    s["rolloutTimeout"] = "0s".into();
    cases.push((
        "zero rollout timeout",
        s,
        "rolloutTimeout must be at least 1s",
    ));
    let mut s = valid_spec();
    s["propagationDelay"] = "soon".into();
    cases.push(("unparsable duration", s, "spec.propagationDelay"));
    let mut s = valid_spec();
    s["windows"] = serde_json::json!([{"start": "0 2 * * *", "duration": "30s"}]);
    cases.push((
        "rotation window under a minute",
        s,
        "a window must be open at least 1m",
    ));
    let mut s = valid_spec();
    s["windows"] = serde_json::json!([{"start": "0 2 * * *", "duration": "four hours"}]);
    cases.push(("unparsable window length", s, "spec.windows[0].duration"));

    let mut s = valid_spec();
    s["secrets"][0]["namespace"] = "other-team".into();
    cases.push((
        "secret in another namespace",
        s,
        "a namespaced TokenRotation writes only Secrets in its own namespace",
    ));
    for (i, (what, spec, message)) in cases.into_iter().enumerate() {
        let (ok, out) = kubectl(
            &kc,
            &["apply", "-f", "-"],
            &manifest(&format!("bad-{i}"), spec),
        )
        .await;
        assert!(!ok, "{what}: accepted:\n{out}");
        assert!(out.contains("is invalid"), "{what}: {out}");
        assert!(
            out.contains(message),
            "{what}: expected {message:?} in:\n{out}"
        );
    }
    let (_, out) = kubectl(&kc, &["get", "tokenrotations", "-o", "name"], "").await;
    assert_eq!(
        out.trim(),
        "tokenrotation.tokenrotator.io/good\ntokenrotation.tokenrotator.io/good-key\ntokenrotation.tokenrotator.io/windowed",
        "nothing bad was stored"
    );

    // ClusterTokenRotation: the rotation's own rules still apply, plus namespaces names xor
    // selector.
    let crd = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/clustertokenrotations.tokenrotator.io.yaml"
    ))
    .unwrap();
    let (ok, out) = kubectl(&kc, &["apply", "-f", "-"], &crd).await;
    assert!(ok, "{out}");
    let cluster = |name: &str, namespaces: serde_json::Value, rotation: serde_json::Value| {
        serde_json::to_string(&serde_json::json!({
            "apiVersion": "tokenrotator.io/v1alpha1",
            "kind": "ClusterTokenRotation",
            "metadata": {"name": name},
            "spec": {"namespaces": namespaces, "credentialsNamespace": "ops", "rotation": rotation}
        }))
        .unwrap()
    };
    let (ok, out) = kubectl(
        &kc,
        &["apply", "-f", "-"],
        &cluster(
            "shared",
            serde_json::json!({"selector": {"matchLabels": {"twilio": "shared"}}}),
            valid_spec(),
        ),
    )
    .await;
    assert!(ok, "a valid ClusterTokenRotation is accepted: {out}");
    let mut secret_ns = valid_spec();
    secret_ns["secrets"][0]["namespace"] = "other-team".into();
    for (what, namespaces, rotation, message) in [
        (
            "names and selector",
            serde_json::json!({"names": ["a"], "selector": {}}),
            valid_spec(),
            "set namespaces.names or namespaces.selector (exactly one)",
        ),
        (
            "neither names nor selector",
            serde_json::json!({}),
            valid_spec(),
            "set namespaces.names or namespaces.selector (exactly one)",
        ),
        (
            "a secret with a namespace",
            serde_json::json!({"names": ["a"]}),
            secret_ns,
            "writes only Secrets in its own namespace",
        ),
    ] {
        let (ok, out) = kubectl(
            &kc,
            &["apply", "-f", "-"],
            &cluster("bad", namespaces, rotation),
        )
        .await;
        assert!(!ok, "{what}: accepted:\n{out}");
        assert!(
            out.contains(message),
            "{what}: expected {message:?} in:\n{out}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

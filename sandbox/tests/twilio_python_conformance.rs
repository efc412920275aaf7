//! Conformance with Twilio's official Python library: `tests/python/twilio_conformance.py` runs
//! against the in-process emulator (venv from `scripts/install-tools.sh`).

use std::path::Path;

use sandbox::twilio::{KeyKind, TwilioSandbox};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_client_works_against_the_emulator() {
    let python = sandbox::tools::python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/twilio_conformance.py");
    let tw = TwilioSandbox::start().await.unwrap();
    let (ac, tok) = tw.create_account();
    let ie_sid = "ACe1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1";
    let ie_tok = "e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1";
    tw.add_account(ie_sid, ie_tok, "ie1");
    let (std_sid, std_secret) = tw.create_key(&ac, KeyKind::Standard, "std");

    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .args([
            &tw.base_url(),
            &ac,
            &tok,
            ie_sid,
            ie_tok,
            &std_sid,
            &std_secret,
        ])
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "conformance script failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    let n: u32 = last
        .strip_prefix("OK ")
        .and_then(|s| s.strip_suffix(" checks"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("last line {last:?} is not 'OK <n> checks'"));
    assert!(n >= 50, "only {n} checks ran");

    // The emulator saw the library's own requests on the hosts it meant to reach.
    let log = tw.request_log();
    assert!(log.iter().all(|r| r
        .user_agent
        .as_deref()
        .is_some_and(|ua| ua.starts_with("twilio-python/9."))));
    for host in [
        "accounts.twilio.com",
        "api.twilio.com",
        "iam.twilio.com",
        "api.dublin.ie1.twilio.com",
        "accounts.dublin.ie1.twilio.com",
        "api.ie1.twilio.com",
    ] {
        assert!(
            log.iter().any(|r| r.host.as_deref() == Some(host)),
            "no request to {host}"
        );
    }
    // Old primary refused exactly once (the checked 20003 after promotion).
    assert_eq!(tw.stats_for_secret(&tok).refused, 1);
    assert_eq!(tw.stats_for_secret(&tok).role, "retired");
}

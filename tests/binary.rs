//! The built `token-rotator` binary, run as separate processes against the sandbox through a
//! kubeconfig (nothing in-process): leader election between two replicas with a crash of the
//! leader mid-rotation, `/metrics` moving through a rotation, and the `rotate`/`status`/`abort`
//! commands.

mod common;
#[path = "common/process.rs"]
mod process;

use common::*;
use kube::api::Api;
use process::{cli, start_replica as start_replica_with, tempdir, wait_ready, Replica, BIN};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use token_rotator::api::{Phase, TokenRotation};

/// A kubeconfig file whose bearer token is `user`, so the API server's audit log shows who wrote.
fn kubeconfig(w: &World, dir: &Path, user: &str) -> PathBuf {
    let path = dir.join(format!("{user}.kubeconfig"));
    std::fs::write(&path, w.sb.api.kubeconfig_yaml_as(user)).unwrap();
    path
}

fn start_replica(w: &World, dir: &Path, name: &str, extra: &[&str]) -> Replica {
    let mut args = vec!["--lease-namespace", "default"];
    args.extend_from_slice(extra);
    start_replica_with(
        &kubeconfig(w, dir, name),
        dir,
        name,
        &w.sb.twilio.base_url(),
        &args,
    )
}

/// The value of the first sample of `name` whose line contains every one of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|p| l.contains(p)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Replicas that wrote anything but the leader election itself (the test's own client and the
/// workload simulator write too, anonymously).
fn acting_writers(w: &World, range: std::ops::Range<usize>) -> BTreeSet<String> {
    w.sb.api.audit_log()[range]
        .iter()
        .filter(|r| r.is_write() && r.user.starts_with("replica-") && !r.path.contains("/leases"))
        .map(|r| r.user.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_only_the_leader_acts_and_the_standby_finishes_after_a_crash() {
    let w = world(3).await;
    let dir = tempdir();
    let traffic = consumer_traffic(&w, Duration::from_millis(20));
    let lease = ["--lease-duration-seconds", "3"];
    let mut a = start_replica(&w, &dir, "replica-a", &lease);
    wait_ready(&a).await;
    // a holds the lease before b starts, so the roles are known.
    let deadline = Instant::now() + Duration::from_secs(30);
    while lease_holder(&w.client, "default").await.as_deref() != Some("replica-a") {
        assert!(Instant::now() < deadline, "no leader:\n{}", a.output());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = start_replica(&w, &dir, "replica-b", &lease);
    wait_ready(&b).await;
    let start = w.sb.api.audit_log().len();
    assert_eq!(
        sample(&a.scrape().await, "token_rotator_leader", &[]),
        Some(1.0)
    );
    assert_eq!(
        sample(&b.scrape().await, "token_rotator_leader", &[]),
        Some(0.0)
    );

    create(&w, &manual_rotation(&w, "twilio")).await;
    wait_status(&w, "twilio", Duration::from_secs(60), |s| {
        s.phase == Some(Phase::RollingOut)
    })
    .await;
    // The leader has acted (staged and distributed); then it crashes without releasing the lease.
    let leader_metrics = a.scrape().await;
    a.child.kill().await.unwrap();
    let killed_at = w.sb.api.audit_log().len();
    let before = acting_writers(&w, start..killed_at);
    assert_eq!(
        before,
        BTreeSet::from(["replica-a".to_string()]),
        "only the leader wrote while it led"
    );
    assert_eq!(
        sample(
            &leader_metrics,
            "token_rotator_phase",
            &[r#"name="twilio""#, r#"phase="RollingOut""#]
        ),
        Some(1.0)
    );

    // Figures, not assertions: how long the standby took to lead (lease 3 s).
    let killed = Instant::now();
    while lease_holder(&w.client, "default").await.as_deref() != Some("replica-b") {
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no take-over:\n{}",
            b.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "standby took the lease {:?} after the leader was killed",
        killed.elapsed()
    );
    let st = wait_status(&w, "twilio", Duration::from_secs(90), |s| s.rotations == 1).await;
    let (served, refused) = traffic.stop().await;
    assert_eq!(st.phase, Some(Phase::Ready), "{}", b.output());
    assert_eq!(
        lease_holder(&w.client, "default").await.as_deref(),
        Some("replica-b")
    );
    let after = acting_writers(&w, killed_at..w.sb.api.audit_log().len());
    assert_eq!(
        after,
        BTreeSet::from(["replica-b".to_string()]),
        "the standby took over and nobody else wrote"
    );
    assert!(
        w.sb.twilio.secondary_token(&w.sid).is_none(),
        "no secondary left"
    );
    let new = w.sb.twilio.primary_token(&w.sid).unwrap();
    assert_ne!(new, w.old_token);
    assert_eq!(
        secret_value(&w, "twilio-creds", "TWILIO_AUTH_TOKEN")
            .await
            .as_deref(),
        Some(new.as_str())
    );
    assert!(served > 0);
    assert_eq!(
        refused, 0,
        "no consumer request refused across the hand-over"
    );
    let text = b.scrape().await;
    assert_eq!(sample(&text, "token_rotator_leader", &[]), Some(1.0));
    for (replica, out) in [(&a, a.output()), (&b, b.output())] {
        assert!(
            !out.contains(&new) && !out.contains(&w.old_token),
            "{} logged a token",
            replica.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_through_a_rotation() {
    let w = world(2).await;
    let dir = tempdir();
    let r = start_replica(&w, &dir, "solo", &["--leader-elect", "false"]);
    wait_ready(&r).await;
    let tr = rotation(
        &w,
        "twilio",
        serde_json::json!({"tokenrotator.io/schedule": "@every 24h"}),
    );
    create(&w, &tr).await;
    // Scheduled for the first time: Ready, no rotation yet, next run a day ahead.
    let st = wait_status(&w, "twilio", Duration::from_secs(30), |s| {
        s.next_rotation_time.is_some()
    })
    .await;
    assert_eq!(st.rotations, 0);
    let text = r.scrape().await;
    let next = sample(
        &text,
        "token_rotator_next_rotation_timestamp_seconds",
        &[r#"name="twilio""#],
    )
    .expect("next rotation timestamp");
    let day_ahead = (chrono::Utc::now() + chrono::Duration::hours(24)).timestamp() as f64;
    assert!(
        (next - day_ahead).abs() < 600.0,
        "next {next} vs {day_ahead}"
    );
    assert_eq!(sample(&text, "token_rotator_token_age_seconds", &[]), None);
    assert_eq!(
        sample(
            &text,
            "token_rotator_rotations_total",
            &[r#"result="Succeeded""#]
        ),
        None
    );

    // Rotate with the CLI, scraping all along: the phase gauge walks the whole rotation.
    let kc = kubeconfig(&w, &dir, "cli");
    let out = cli(&kc, &["rotate", "twilio", "-n", NS]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut seen = Vec::<String>::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let text = r.scrape().await;
        let phase = [
            "Staging",
            "Distributing",
            "RollingOut",
            "Verifying",
            "Promoting",
            "Retiring",
            "Ready",
        ]
        .into_iter()
        .find(|p| sample(&text, "token_rotator_phase", &[&format!(r#"phase="{p}""#)]) == Some(1.0));
        if let Some(p) = phase {
            if seen.last().map(String::as_str) != Some(p) {
                seen.push(p.to_owned());
            }
        }
        if sample(
            &text,
            "token_rotator_rotations_total",
            &[r#"result="Succeeded""#],
        ) == Some(1.0)
        {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "rotation did not finish; seen {seen:?}\n{}",
            r.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(seen.contains(&"RollingOut".to_string()), "{seen:?}");
    assert!(seen.contains(&"Retiring".to_string()), "{seen:?}");
    assert_eq!(seen.last().map(String::as_str), Some("Ready"), "{seen:?}");
    let age = sample(
        &text,
        "token_rotator_token_age_seconds",
        &[r#"name="twilio""#],
    )
    .expect("token age after the rotation");
    assert!((0.0..60.0).contains(&age), "age {age}");
    for phase in ["Staging", "RollingOut", "Retiring"] {
        let n = sample(
            &text,
            "token_rotator_phase_duration_seconds_count",
            &[&format!(r#"phase="{phase}""#)],
        );
        assert_eq!(n, Some(1.0), "one {phase} observed");
    }
    let rollout = sample(
        &text,
        "token_rotator_phase_duration_seconds_sum",
        &[r#"phase="RollingOut""#],
    )
    .unwrap();
    assert!(rollout > 0.0, "rollout took time");
    for endpoint in [
        "create_secondary_auth_token",
        "promote_secondary_auth_token",
    ] {
        let n = sample(
            &text,
            "token_rotator_twilio_requests_total",
            &[&format!(r#"endpoint="{endpoint}""#), r#"outcome="success""#],
        );
        assert_eq!(n, Some(1.0), "{endpoint}");
    }
    assert!(
        sample(
            &text,
            "token_rotator_reconciles_total",
            &[r#"name="twilio""#]
        )
        .unwrap()
            > 5.0
    );

    // The status table shows the finished rotation and the next run.
    let out = cli(&kc, &["status", "-n", NS]).await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = table
        .lines()
        .find(|l| l.starts_with("twilio"))
        .expect(&table);
    assert!(
        row.contains("Ready") && row.contains("s ago") && row.contains(" in 2"),
        "{table}"
    );

    // Nothing in flight: abort is refused with a reason, and rotate twice starts one rotation.
    let out = cli(&kc, &["abort", "twilio", "-n", NS]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to abort"));
    // A deleted TokenRotation's series vanish.
    Api::<TokenRotation>::namespaced(w.client.clone(), NS)
        .delete("twilio", &Default::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while sample(
        &r.scrape().await,
        "token_rotator_phase",
        &[r#"name="twilio""#],
    )
    .is_some()
    {
        assert!(
            Instant::now() < deadline,
            "series of a deleted resource stayed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_rotate_and_abort_drive_the_controller() {
    let w = world(2).await;
    let dir = tempdir();
    let kc = kubeconfig(&w, &dir, "cli");
    // Make the rollout hang so there is time to abort: new pods never become ready.
    w.sb.workloads.fail_new_pods(
        sandbox::workloads::WorkloadKind::Deployment,
        NS,
        "api",
        true,
    );
    // Scoped to the test namespace (and one that does not exist): a TokenRotation elsewhere is
    // never touched.
    let outside: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "outside"}})).unwrap();
    Api::<k8s_openapi::api::core::v1::Namespace>::all(w.client.clone())
        .create(&Default::default(), &outside)
        .await
        .unwrap();
    let mut stray = manual_rotation(&w, "stray");
    stray.metadata.namespace = Some("outside".into());
    Api::<TokenRotation>::namespaced(w.client.clone(), "outside")
        .create(&Default::default(), &stray)
        .await
        .unwrap();
    let scope = format!("{NS},not-there");
    let r = start_replica(
        &w,
        &dir,
        "solo",
        &["--leader-elect", "false", "--namespace", &scope],
    );
    wait_ready(&r).await;
    create(&w, &rotation(&w, "twilio", serde_json::json!({}))).await;
    let out = cli(&kc, &["status", "twilio", "-n", NS]).await;
    assert!(out.status.success());
    let out = cli(&kc, &["rotate", "twilio", "-n", NS]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_status(&w, "twilio", Duration::from_secs(30), |s| {
        s.phase == Some(Phase::RollingOut)
    })
    .await;
    // A second rotate while one is in flight is refused, naming the phase.
    let out = cli(&kc, &["rotate", "twilio", "-n", NS]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already rotating"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&kc, &["status", "-A"]).await;
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    let row = table.lines().find(|l| l.contains("twilio")).expect(&table);
    assert!(
        row.starts_with(NS) && row.contains("RollingOut") && row.contains("0/1"),
        "{table}"
    );

    let out = cli(&kc, &["abort", "twilio", "-n", NS]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    w.sb.workloads.fail_new_pods(
        sandbox::workloads::WorkloadKind::Deployment,
        NS,
        "api",
        false,
    );
    let st = wait_status(&w, "twilio", Duration::from_secs(60), |s| {
        s.phase == Some(Phase::Aborted)
    })
    .await;
    assert_eq!(st.rotations, 0);
    assert_eq!(
        w.sb.twilio.primary_token(&w.sid).as_deref(),
        Some(w.old_token.as_str())
    );
    assert!(w.sb.twilio.secondary_token(&w.sid).is_none());
    // `status NAME` shows the history: the aborted rotation.
    let out = cli(&kc, &["status", "twilio", "-n", NS]).await;
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    let id = st.history.first().map(|h| h.id.clone()).expect("recorded");
    let row = shown.lines().find(|l| l.starts_with(&id)).expect(&shown);
    assert!(row.contains("Manual") && row.contains("Aborted"), "{shown}");
    let stray = Api::<TokenRotation>::namespaced(w.client.clone(), "outside")
        .get("stray")
        .await
        .unwrap();
    assert!(
        stray.status.is_none(),
        "a namespace outside --namespace was reconciled"
    );
    // Both CLI writes carry the CLI's field manager, not the controller's.
    let managers: Vec<String> = Api::<TokenRotation>::namespaced(w.client.clone(), NS)
        .get("twilio")
        .await
        .unwrap()
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(
        managers.iter().any(|m| m == "token-rotator-cli"),
        "{managers:?}"
    );
}

/// Without the CRDs installed, `status` and `run` fail with a line or two a person can act on
/// (what failed, why, what to run), not a Debug dump of the API's Status; logs written to a
/// file carry no colour codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_without_the_crds_say_what_to_do() {
    let sb = sandbox::Sandbox::start().await.expect("sandbox");
    let dir = tempdir();
    let kc = dir.join("bare.kubeconfig");
    std::fs::write(&kc, sb.api.kubeconfig_yaml()).unwrap();
    let check = |what: &str, out: &std::process::Output| {
        assert!(!out.status.success(), "{what} must fail");
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        let last: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("token-rotator:"))
            .collect();
        assert_eq!(last.len(), 1, "{what}: one error line: {err}");
        assert!(
            last[0].contains("token-rotator crd | kubectl apply -f -"),
            "{what}: {err}"
        );
        assert!(last[0].contains("404"), "{what}: the API's answer: {err}");
        assert!(
            !err.contains("Status {") && !err.contains("ErrorResponse"),
            "{what}: {err}"
        );
        assert!(
            !err.contains('\x1b'),
            "{what}: no colour codes off a terminal: {err}"
        );
        println!("{what}: {}", last[0]);
    };
    check("status -A", &cli(&kc, &["status", "-A"]).await);
    let out = tokio::process::Command::new(BIN)
        .arg("--kubeconfig")
        .arg(&kc)
        .args(["run", "--leader-elect=false", "--http-addr", "127.0.0.1:0"])
        .output()
        .await
        .expect("run token-rotator");
    check("run", &out);
    let logs = String::from_utf8_lossy(&out.stdout);
    assert!(logs.contains("starting token-rotator"), "{logs}");
    assert!(!logs.contains('\x1b'), "plain text logs in a file: {logs}");

    // An API server that is not there: what failed and what to check, in one line.
    let gone = dir.join("gone.kubeconfig");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        &gone,
        sb.api
            .kubeconfig_yaml()
            .replace(&sb.api.addr().port().to_string(), &port.to_string()),
    )
    .unwrap();
    let out = cli(&gone, &["status", "-A"]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("Connection refused"), "{err}");
    assert!(lines[0].contains("--kubeconfig"), "{err}");
}

/// The CLI covers ClusterTokenRotations (`ctr/NAME`) as well as TokenRotations: status tables
/// for both, `-o json|yaml`, rotate, the history, and abort refused when nothing is in flight.
/// Installed as `kubectl-tokenrotator`, the real kubectl runs it as a plugin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_covers_both_kinds_and_runs_as_a_kubectl_plugin() {
    use kube::api::PostParams;
    use token_rotator::api::ClusterTokenRotation;
    let w = world(1).await;
    let dir = tempdir();
    let kc = kubeconfig(&w, &dir, "cli");
    label_shared(&w, NS).await;
    let mut ctr = shared_rotation(&w, NS);
    ctr.metadata.annotations = None;
    Api::<ClusterTokenRotation>::all(w.client.clone())
        .create(&PostParams::default(), &ctr)
        .await
        .unwrap();
    // A TokenRotation of another account (one Auth Token has one owner).
    let (other_sid, _) = w.sb.twilio.create_account();
    let mut tr = rotation(&w, "twilio", serde_json::json!({}));
    tr.spec.twilio.account_sid = other_sid;
    create(&w, &tr).await;
    let ctl = start_controller(
        &w,
        token_rotator::controller::failpoints::Failpoints::default(),
    );
    wait_cluster_status(&w, "shared", Duration::from_secs(30), |s| s.phase.is_some()).await;

    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let all = cli(&kc, &["status", "-A"]).await;
    assert!(all.status.success(), "{}", text(&all));
    let shown = text(&all);
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with(NS) && l.contains("twilio")),
        "{shown}"
    );
    assert!(shown.lines().any(|l| l.starts_with("shared")), "{shown}");

    let json = cli(&kc, &["status", "ctr/shared", "-o", "json"]).await;
    let obj: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(obj["kind"], "ClusterTokenRotation");
    assert_eq!(obj["metadata"]["name"], "shared");
    let yaml = cli(&kc, &["status", "-A", "-o", "yaml"]).await;
    let list: serde_json::Value = serde_yaml::from_slice(&yaml.stdout).expect("YAML");
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");

    let out = cli(&kc, &["rotate", "ctr/shared"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("clustertokenrotation shared rotation requested"));
    let st = wait_cluster_status(&w, "shared", Duration::from_secs(60), |s| s.rotations == 1).await;
    let out = cli(&kc, &["status", "clustertokenrotation/shared"]).await;
    let id = &st.history[0].id;
    assert!(
        text(&out)
            .lines()
            .any(|l| l.starts_with(id.as_str()) && l.contains("Succeeded")),
        "{}",
        text(&out)
    );
    let out = cli(&kc, &["abort", "ctr/shared"]).await;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("clustertokenrotation shared has no rotation in flight"),
        "{}",
        text(&out)
    );
    let out = cli(&kc, &["status", "widget/shared"]).await;
    assert!(!out.status.success());
    assert!(text(&out).contains("ctr/NAME"), "{}", text(&out));
    ctl.abort();

    // `kubectl tokenrotator ...`: kubectl finds the plugin on PATH by its name.
    let bin_dir = dir.join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::os::unix::fs::symlink(BIN, bin_dir.join("kubectl-tokenrotator")).unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = tokio::process::Command::new(sandbox::tools::kubectl())
        .args(["tokenrotator", "--kubeconfig"])
        .arg(&kc)
        .args(["status", "-A"])
        .env("PATH", path)
        .output()
        .await
        .expect("kubectl");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).lines().any(|l| l.starts_with("shared")),
        "{}",
        text(&out)
    );
}

/// The krew manifest template installs the binary under the plugin name kubectl looks for.
#[test]
fn krew_manifest_installs_the_plugin_name() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/krew/tokenrotator.yaml"
    ))
    .unwrap();
    let m: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(m["kind"], "Plugin");
    assert_eq!(m["metadata"]["name"], "tokenrotator");
    assert_eq!(
        m["spec"]["version"].as_str(),
        Some(format!("v{}", env!("CARGO_PKG_VERSION")).as_str()),
        "the manifest follows the crate version"
    );
    let platforms = m["spec"]["platforms"].as_array().unwrap();
    assert!(!platforms.is_empty());
    for p in platforms {
        assert_eq!(p["bin"], "kubectl-tokenrotator");
        assert!(p["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["from"] == "token-rotator" && f["to"] == "kubectl-tokenrotator"));
    }
}

/// Trying it by hand, as the README shows: `sandbox up` (here in-process), kubectl applies the
/// CRDs, an app and a TokenRotation, `token-rotator run` runs as a process against the
/// kubeconfig with `--twilio-base-url`, and the rotation is watched with kubectl. The consumers
/// end on the new token with no call refused, as the traffic endpoint counts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_hand_on_sandbox_up_with_kubectl_and_the_binary() {
    const SID: &str = "AC00000000000000000000000000000042";
    const TOKEN: &str = "0000000000000000000000000000beef";
    let dir = tempdir();
    let kc = dir.join("sandbox.kubeconfig");
    let args = sandbox::up::UpArgs {
        kubeconfig: kc.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        twilio_listen: "127.0.0.1:0".parse().unwrap(),
        accounts: vec![sandbox::twilio::cli::parse_account(&format!("{SID}:{TOKEN}")).unwrap()],
        call_every_ms: 20,
        authz: false,
        termination_grace_scale: 0.0,
    };
    let up = sandbox::up::Up::start(&args).await.unwrap();
    let banner = up.banner(&args);
    let twilio = banner
        .lines()
        .find_map(|l| l.strip_prefix("twilio base url: "))
        .unwrap()
        .to_string();
    let traffic_url = banner
        .lines()
        .find_map(|l| l.strip_prefix("traffic: "))
        .unwrap()
        .to_string();
    let kubectl = |args: Vec<String>, stdin: Option<String>| {
        let kc = kc.clone();
        let home = dir.clone();
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut child = std::process::Command::new(sandbox::tools::kubectl())
                .args(&args)
                .env("KUBECONFIG", &kc)
                .env("HOME", &home)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut input = child.stdin.take().unwrap();
            input
                .write_all(stdin.unwrap_or_default().as_bytes())
                .unwrap();
            drop(input);
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "kubectl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
    };
    let a = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let crds = cli(&kc, &["crd"]).await;
    assert!(crds.status.success());
    kubectl(
        a(&["apply", "-f", "-"]),
        Some(String::from_utf8_lossy(&crds.stdout).into_owned()),
    )
    .await
    .unwrap();
    let app = format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: twilio-admin, namespace: default}}
stringData: {{authToken: {TOKEN}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: twilio-creds, namespace: default}}
stringData: {{TWILIO_ACCOUNT_SID: {SID}, TWILIO_AUTH_TOKEN: {TOKEN}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: api, namespace: default}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: api}}}}
  template:
    metadata: {{labels: {{app: api}}}}
    spec:
      containers:
      - name: app
        image: shop/api:1
        envFrom: [{{secretRef: {{name: twilio-creds}}}}]
---
apiVersion: tokenrotator.io/v1alpha1
kind: TokenRotation
metadata: {{name: twilio, namespace: default}}
spec:
  twilio: {{accountSid: {SID}, credentialsSecretRef: {{name: twilio-admin, key: authToken}}}}
  authToken: {{}}
  secrets: [{{name: twilio-creds, accountSidKey: TWILIO_ACCOUNT_SID, tokenKey: TWILIO_AUTH_TOKEN}}]
  propagationDelay: 1s
  overlap: 1s
"#
    );
    kubectl(a(&["apply", "-f", "-"]), Some(app)).await.unwrap();
    kubectl(
        a(&["rollout", "status", "deployment/api", "--timeout=30s"]),
        None,
    )
    .await
    .unwrap();
    let port = process::free_port();
    let log = dir.join("operator.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut operator = tokio::process::Command::new(BIN)
        .arg("--kubeconfig")
        .arg(&kc)
        .args([
            "run",
            "--leader-elect",
            "false",
            "--twilio-base-url",
            &twilio,
        ])
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    kubectl(
        a(&[
            "annotate",
            "tokenrotation",
            "twilio",
            "tokenrotator.io/rotate-now=1",
        ]),
        None,
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = kubectl(
            a(&[
                "get",
                "tokenrotation",
                "twilio",
                "-o",
                "jsonpath={.status.phase}/{.status.rotations}",
            ]),
            None,
        )
        .await
        .unwrap();
        if got == "Ready/1" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{got}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    operator.kill().await.unwrap();
    let summary: serde_json::Value = reqwest::get(&traffic_url)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (served, refused) = up.traffic.stop().await;
    assert!(served > 0);
    assert_eq!(refused, 0, "{summary}");
    // The pods ran on two tokens over the rotation: the old and the new.
    let credentials: BTreeSet<&str> = summary["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["credential"].as_str().unwrap())
        .collect();
    assert_eq!(credentials.len(), 2, "{summary}");
    assert_ne!(up.sandbox.twilio.primary_token(SID).as_deref(), Some(TOKEN));
}

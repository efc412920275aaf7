//! Fencing: a leader cut off from the API server stops acting before its Lease can expire, so
//! a standby that takes the expired Lease never acts beside it.

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use sandbox::Sandbox;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use token_rotator::leader::{run_as_leader, LeaderError, LeaseConfig};
use token_rotator::metrics::Metrics;
use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy in front of the API server that can be cut: open connections are dropped and
/// new ones refused, as when the network between the leader and the API server fails.
struct Proxy {
    url: String,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (c, list) = (cut.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                list.lock().unwrap().push(task);
            }
        });
        Self { url, cut, conns }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for t in self.conns.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_api_server_stops_before_its_lease_expires() {
    let sb = Sandbox::start().await.expect("sandbox");
    let proxy = Proxy::start(sb.api.addr()).await;
    let config = kube::Config::new(proxy.url.parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let cfg = LeaseConfig {
        name: "token-rotator".into(),
        namespace: "default".into(),
        identity: "replica-a".into(),
        duration_seconds: 3,
    };
    let acting = Arc::new(AtomicBool::new(false));
    let a = acting.clone();
    let leader = tokio::spawn(async move {
        let r = run_as_leader(
            client,
            cfg,
            Metrics::default(),
            std::future::pending::<()>(),
            move || async move {
                a.store(true, Ordering::SeqCst);
                std::future::pending::<Result<(), std::io::Error>>().await
            },
        )
        .await;
        let stopped = chrono::Utc::now();
        (r, stopped)
    });
    // Leading, and renewing through the proxy.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !acting.load(Ordering::SeqCst) {
        assert!(tokio::time::Instant::now() < deadline, "never led");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.cut();
    let (result, stopped) = tokio::time::timeout(Duration::from_secs(10), leader)
        .await
        .expect("the leader never stopped acting")
        .unwrap();
    assert!(
        matches!(result, Err(LeaderError::RenewDeadline(_))),
        "{result:?}"
    );
    // The Lease as the API server has it: its last renewal by the cut-off leader.
    let lease = Api::<Lease>::namespaced(sb.client(), "default")
        .get("token-rotator")
        .await
        .unwrap();
    let spec = lease.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("replica-a"));
    let renewed =
        chrono::DateTime::from_timestamp_millis(spec.renew_time.unwrap().0.as_millisecond())
            .unwrap();
    let expires = renewed + chrono::Duration::seconds(3);
    assert!(
        stopped < expires,
        "stopped acting at {stopped}, after the lease expired at {expires}"
    );
    println!(
        "fencing: stopped {} ms after the last renewal, {} ms before the lease expired",
        (stopped - renewed).num_milliseconds(),
        (expires - stopped).num_milliseconds()
    );
}

/// Negative control: the lease manager alone, cut off the same way, still reports leading
/// after its lease has expired; without the renew deadline the replica would go on acting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_the_lease_manager_alone_keeps_leading_past_expiry() {
    let sb = Sandbox::start().await.expect("sandbox");
    let proxy = Proxy::start(sb.api.addr()).await;
    let client = kube::Client::try_from(kube::Config::new(proxy.url.parse().unwrap())).unwrap();
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client, "token-rotator")
        .with_namespace("default")
        .with_identity("replica-a")
        .with_duration(3)
        .with_grace(2)
        .build()
        .await
        .unwrap();
    let (leading, _task) = manager.watch().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !*leading.borrow() {
        assert!(tokio::time::Instant::now() < deadline, "never led");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        *leading.borrow(),
        "the library reports leading 4 s after a 3 s lease could no longer be renewed"
    );
}

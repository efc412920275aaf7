//! Notifications: the operator-level sinks that hear about rotations that succeeded, held,
//! were aborted or failed. A generic JSON webhook and a Slack-compatible incoming webhook, each
//! URL read from a Secret (webhook URLs are secrets: they are never logged). Delivery runs in
//! its own task with retries and backoff; a rotation never waits for it, and a full queue drops
//! notices rather than block.

use crate::rotation::reasons;
use std::time::Duration;
use tokio::sync::mpsc;

/// What a sink speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    /// `POST` of a JSON object (resource, reason, message, type, time).
    Webhook,
    /// `POST` of `{"text": ...}`, as Slack (and Mattermost, Teams' Slack-compatible) webhooks take.
    Slack,
}

/// A sink and the Secret key holding its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sink {
    pub kind: SinkKind,
    pub namespace: String,
    pub name: String,
    pub key: String,
}

impl Sink {
    /// Parses `NAMESPACE/NAME:KEY` (the flag's form).
    pub fn parse(kind: SinkKind, s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not NAMESPACE/SECRET:KEY (the Secret key holding the URL)");
        let (ns, rest) = s.split_once('/').ok_or_else(bad)?;
        let (name, key) = rest.split_once(':').ok_or_else(bad)?;
        if [ns, name, key].iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        Ok(Self {
            kind,
            namespace: ns.to_owned(),
            name: name.to_owned(),
            key: key.to_owned(),
        })
    }

    fn describe(&self) -> String {
        format!("{:?} sink {}/{}", self.kind, self.namespace, self.name)
    }
}

/// One thing worth telling people.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// `TokenRotation shop/twilio`, `ClusterTokenRotation shared`.
    pub resource: String,
    pub reason: &'static str,
    pub message: String,
    pub warning: bool,
}

/// Whether an Event with this reason is worth a notification: a rotation that ended or held,
/// and every problem the resource reports as Degraded.
pub fn worth_notifying(reason: &str, warning: bool) -> bool {
    match reason {
        reasons::ROTATION_SUCCEEDED
        | reasons::ROTATION_HELD
        | reasons::ROTATION_ABORTED
        | reasons::ROTATION_FAILED => true,
        // Progress and requests, not problems.
        reasons::ROTATION_ABORTING | reasons::ABORT_REFUSED | reasons::ABORT_IGNORED => false,
        _ => warning,
    }
}

/// Delivery settings; tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    pub attempts: u32,
    pub first_backoff: Duration,
    pub timeout: Duration,
}

impl Default for Delivery {
    fn default() -> Self {
        Self {
            attempts: 4,
            first_backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The sending end; cheap to clone. The default sends nowhere.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    tx: Option<mpsc::Sender<Notice>>,
}

/// Notices waiting for delivery before new ones are dropped.
const QUEUE: usize = 256;

impl Notifier {
    /// Starts delivering to `sinks` in a task of its own; none: a notifier that sends nothing.
    pub fn start(client: kube::Client, sinks: Vec<Sink>, delivery: Delivery) -> Self {
        if sinks.is_empty() {
            return Self::default();
        }
        let (tx, mut rx) = mpsc::channel::<Notice>(QUEUE);
        tokio::spawn(async move {
            let http = match reqwest::Client::builder().timeout(delivery.timeout).build() {
                Ok(h) => h,
                Err(e) => {
                    tracing::error!(error = %e, "notifications disabled: cannot build an HTTP client");
                    return;
                }
            };
            while let Some(notice) = rx.recv().await {
                for sink in &sinks {
                    deliver(&client, &http, sink, &notice, delivery).await;
                }
            }
        });
        Self { tx: Some(tx) }
    }

    /// Queues a notice; never waits (a full queue drops it, with a log line).
    pub fn notify(&self, notice: Notice) {
        let Some(tx) = &self.tx else { return };
        if let Err(e) = tx.try_send(notice) {
            tracing::warn!(error = %e, "notification dropped: the queue is full or closed");
        }
    }
}

/// The body a sink receives.
pub fn payload(kind: SinkKind, n: &Notice) -> serde_json::Value {
    match kind {
        SinkKind::Webhook => serde_json::json!({
            "resource": n.resource,
            "reason": n.reason,
            "message": n.message,
            "type": if n.warning { "Warning" } else { "Normal" },
            "time": chrono::Utc::now().to_rfc3339(),
        }),
        SinkKind::Slack => {
            let icon = if n.warning {
                ":warning:"
            } else {
                ":white_check_mark:"
            };
            serde_json::json!({
                "text": format!("{icon} *{}* {}: {}", n.resource, n.reason, n.message)
            })
        }
    }
}

async fn sink_url(client: &kube::Client, sink: &Sink) -> Result<String, String> {
    let [url] =
        crate::controller::secrets::read_keys(client, &sink.namespace, &sink.name, [&sink.key])
            .await
            .map_err(|e| crate::kube_errors::describe(&e))?;
    url.map(|u| u.expose().trim().to_owned())
        .filter(|u| !u.is_empty())
        .ok_or_else(|| format!("the Secret or its key {:?} does not exist", sink.key))
}

/// Sends one notice to one sink, retrying with exponential backoff; failures are logged
/// (without the URL) and dropped.
async fn deliver(
    client: &kube::Client,
    http: &reqwest::Client,
    sink: &Sink,
    notice: &Notice,
    delivery: Delivery,
) {
    let url = match sink_url(client, sink).await {
        Ok(u) => u,
        Err(why) => {
            tracing::warn!(sink = %sink.describe(), reason = notice.reason, %why, "notification not sent");
            return;
        }
    };
    let body = payload(sink.kind, notice);
    let mut backoff = delivery.first_backoff;
    for attempt in 1..=delivery.attempts.max(1) {
        let outcome = http.post(url.as_str()).json(&body).send().await;
        let why = match outcome {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => format!("HTTP {}", r.status().as_u16()),
            // reqwest's error may name the URL: say only what kind of failure it was.
            Err(e) if e.is_timeout() => "timed out".to_owned(),
            Err(e) if e.is_connect() => "could not connect".to_owned(),
            Err(_) => "request failed".to_owned(),
        };
        if attempt == delivery.attempts.max(1) {
            tracing::warn!(sink = %sink.describe(), reason = notice.reason, attempts = attempt, %why, "notification failed; giving up");
            return;
        }
        tracing::debug!(sink = %sink.describe(), attempt, %why, "notification failed; retrying");
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sinks_parse_from_namespace_name_and_key() {
        assert_eq!(
            Sink::parse(SinkKind::Slack, "ops/slack-hook:url").unwrap(),
            Sink {
                kind: SinkKind::Slack,
                namespace: "ops".into(),
                name: "slack-hook".into(),
                key: "url".into()
            }
        );
        for bad in ["ops/slack-hook", "slack-hook:url", "ops/:url", "/x:y"] {
            assert!(Sink::parse(SinkKind::Webhook, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_outcomes_and_problems_are_worth_a_notice() {
        assert!(worth_notifying(reasons::ROTATION_SUCCEEDED, false));
        assert!(worth_notifying(reasons::ROTATION_HELD, true));
        assert!(worth_notifying(reasons::AUTHENTICATION_FAILED, true));
        assert!(!worth_notifying(reasons::SECRETS_UPDATED, false));
        assert!(!worth_notifying(reasons::ROTATION_ABORTING, true));
    }

    #[test]
    fn payloads_name_the_resource_and_reason() {
        let n = Notice {
            resource: "TokenRotation shop/twilio".into(),
            reason: reasons::ROTATION_HELD,
            message: "rollout did not finish".into(),
            warning: true,
        };
        let w = payload(SinkKind::Webhook, &n);
        assert_eq!(w["resource"], "TokenRotation shop/twilio");
        assert_eq!(w["reason"], "RotationHeld");
        assert_eq!(w["type"], "Warning");
        let s = payload(SinkKind::Slack, &n);
        let text = s["text"].as_str().unwrap();
        assert!(text.contains("TokenRotation shop/twilio") && text.contains("RotationHeld"));
    }
}

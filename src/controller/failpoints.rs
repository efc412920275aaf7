//! Named points where a test can freeze the controller, to kill it exactly there and prove a
//! restart resumes safely. Disarmed (the default) they cost one branch.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

#[derive(Clone, Default)]
pub struct Failpoints {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    armed: Mutex<HashSet<String>>,
    hits: mpsc::UnboundedSender<String>,
}

impl Failpoints {
    /// Failpoints a test can arm; the receiver reports each point reached while armed.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<String>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Self {
                inner: Some(Arc::new(Inner {
                    armed: Mutex::new(HashSet::new()),
                    hits: tx,
                })),
            },
            rx,
        )
    }

    pub fn arm(&self, name: &str) {
        if let Some(i) = &self.inner {
            i.armed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.to_owned());
        }
    }

    /// At an armed point: report it, disarm it, and never return (the test then kills the
    /// controller task, which is what a crash here looks like from outside).
    pub async fn hit(&self, name: &str) {
        let Some(i) = &self.inner else { return };
        let armed = i
            .armed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        if armed {
            tracing::warn!(failpoint = name, "failpoint reached: freezing");
            let _ = i.hits.send(name.to_owned());
            std::future::pending::<()>().await;
        }
    }
}

//! Per-endpoint fault table. Counted faults are consumed one per request; at most one counted
//! fault fires per request (drop-before, then status, then drop-after), endpoint-specific
//! entries before `Endpoint::Any`.

use std::collections::HashMap;
use std::time::Duration;

use super::model::{Endpoint, Fault};

#[derive(Debug, Default, Clone)]
struct Slot {
    latency: Option<Duration>,
    status: Option<(u16, u32)>,
    drop_before: u32,
    drop_after: u32,
}

/// What to do with one request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub latency: Option<Duration>,
    pub status: Option<u16>,
    pub drop_before: bool,
    pub drop_after: bool,
}

impl Plan {
    /// Name of the fault for the request log.
    pub fn label(&self) -> Option<String> {
        if self.drop_before {
            Some("drop_before_apply".into())
        } else if let Some(s) = self.status {
            Some(format!("status {s}"))
        } else if self.drop_after {
            Some("drop_after_apply".into())
        } else {
            self.latency.map(|d| format!("latency {}ms", d.as_millis()))
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct FaultTable {
    slots: HashMap<Endpoint, Slot>,
}

impl FaultTable {
    pub fn set(&mut self, ep: Endpoint, fault: Fault) {
        let slot = self.slots.entry(ep).or_default();
        match fault {
            Fault::Latency { delay } => slot.latency = (!delay.is_zero()).then_some(delay),
            Fault::Status { status, times } => slot.status = (times > 0).then_some((status, times)),
            Fault::DropBeforeApply { times } => slot.drop_before = times,
            Fault::DropAfterApply { times } => slot.drop_after = times,
        }
    }

    pub fn clear(&mut self) {
        self.slots.clear();
    }

    pub fn take(&mut self, ep: Endpoint) -> Plan {
        let order = [ep, Endpoint::Any];
        let mut plan = Plan {
            latency: order
                .iter()
                .find_map(|e| self.slots.get(e).and_then(|s| s.latency)),
            ..Plan::default()
        };
        for e in order {
            if let Some(s) = self.slots.get_mut(&e) {
                if s.drop_before > 0 {
                    s.drop_before -= 1;
                    plan.drop_before = true;
                    return plan;
                }
            }
        }
        for e in order {
            if let Some(s) = self.slots.get_mut(&e) {
                if let Some((status, times)) = s.status {
                    s.status = (times > 1).then_some((status, times - 1));
                    plan.status = Some(status);
                    return plan;
                }
            }
        }
        for e in order {
            if let Some(s) = self.slots.get_mut(&e) {
                if s.drop_after > 0 {
                    s.drop_after -= 1;
                    plan.drop_after = true;
                    return plan;
                }
            }
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_faults_are_consumed_in_order() {
        let mut t = FaultTable::default();
        t.set(Endpoint::Promote, Fault::too_many_requests(2));
        t.set(Endpoint::Promote, Fault::drop_after_apply(1));
        t.set(Endpoint::Any, Fault::drop_before_apply(1));
        t.set(Endpoint::Any, Fault::latency(Duration::from_millis(5)));
        let p = t.take(Endpoint::Promote);
        assert!(p.drop_before);
        assert_eq!(p.latency, Some(Duration::from_millis(5)));
        assert_eq!(t.take(Endpoint::Promote).status, Some(429));
        assert_eq!(t.take(Endpoint::Promote).status, Some(429));
        assert!(t.take(Endpoint::Promote).drop_after);
        let p = t.take(Endpoint::Promote);
        assert_eq!(p.label(), Some("latency 5ms".into()));
        assert!(!p.drop_after && p.status.is_none());
        // Other endpoints only see the Any entries (already consumed, latency remains).
        assert_eq!(
            t.take(Endpoint::KeysList).latency,
            Some(Duration::from_millis(5))
        );
        t.clear();
        assert_eq!(t.take(Endpoint::KeysList), Plan::default());
    }
}

//! Conversions between chrono (our arithmetic, cron) and the jiff timestamps k8s-openapi uses.

use chrono::{DateTime, TimeZone, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Kubernetes serializes `Time` with second precision; truncating here keeps a status that is
/// written and read back equal to the one computed.
pub fn to_k8s(t: DateTime<Utc>) -> Time {
    let ts = k8s_openapi::jiff::Timestamp::from_second(t.timestamp())
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    Time(ts)
}

pub fn from_k8s(t: &Time) -> DateTime<Utc> {
    Utc.timestamp_opt(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32)
        .single()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_second_precision() {
        let t = Utc.with_ymd_and_hms(2026, 11, 23, 9, 30, 15).unwrap();
        assert_eq!(from_k8s(&to_k8s(t)), t);
        let with_ms = t + chrono::Duration::milliseconds(750);
        assert_eq!(from_k8s(&to_k8s(with_ms)), t);
    }
}

//! Random identifiers and secrets in Twilio's formats.

use chrono::{DateTime, SecondsFormat, Utc};
use rand::distr::{Alphanumeric, SampleString};
use rand::Rng;

fn lower_hex(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap())
        .collect()
}

/// `AC` + 32 lowercase hex.
pub fn account_sid() -> String {
    format!("AC{}", lower_hex(32))
}

/// `SK` + 32 lowercase hex.
pub fn key_sid() -> String {
    format!("SK{}", lower_hex(32))
}

/// Auth Token: 32 lowercase hex.
pub fn auth_token() -> String {
    lower_hex(32)
}

/// API key secret: 32 alphanumerics.
pub fn key_secret() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

/// `RQ` + 32 hex, sent as `Twilio-Request-Id`.
pub fn request_id() -> String {
    format!("RQ{}", lower_hex(32))
}

pub fn is_account_sid(s: &str) -> bool {
    is_sid(s, "AC")
}

pub fn is_key_sid(s: &str) -> bool {
    is_sid(s, "SK")
}

fn is_sid(s: &str, prefix: &str) -> bool {
    s.len() == 34 && s.starts_with(prefix) && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// ISO 8601 as used by accounts.twilio.com: `2015-07-31T04:00:00Z`.
pub fn iso8601(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// RFC 2822 as used by api.twilio.com and iam.twilio.com: `Mon, 13 Jun 2016 22:50:08 +0000`.
pub fn rfc2822(t: DateTime<Utc>) -> String {
    t.to_rfc2822()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn formats_match_twilio() {
        let ac = account_sid();
        assert!(is_account_sid(&ac), "{ac}");
        assert!(ac[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()));
        assert!(is_key_sid(&key_sid()));
        let tok = auth_token();
        assert_eq!(tok.len(), 32);
        assert!(tok
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        let secret = key_secret();
        assert_eq!(secret.len(), 32);
        assert!(secret.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(key_secret(), secret);
        assert!(!is_account_sid("SK0123456789abcdef0123456789abcdef"));
        assert!(!is_account_sid("AC0123456789abcdef0123456789abcdeg"));
    }

    #[test]
    fn date_formats() {
        let t = Utc.with_ymd_and_hms(2016, 6, 13, 22, 50, 8).unwrap();
        assert_eq!(rfc2822(t), "Mon, 13 Jun 2016 22:50:08 +0000");
        assert_eq!(iso8601(t), "2016-06-13T22:50:08Z");
    }
}

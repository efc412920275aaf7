//! A string that must never be printed: Twilio auth tokens and API key secrets.
//!
//! `Debug` and `Display` print `[REDACTED]`, the memory is zeroized on drop, and the only way to
//! read the value is [`SecretString::expose`], which keeps every use greppable.

use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

#[derive(Clone, Default, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Reads the secret. Call only where the value leaves the process on purpose (an HTTP
    /// Authorization header, a Secret's data) and never format it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Decodes UTF-8 bytes (a Secret's `data` value), trimming one trailing newline, which
    /// `kubectl create secret --from-file` often leaves behind.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let s = std::str::from_utf8(bytes).ok()?;
        let s = s.strip_suffix('\n').unwrap_or(s);
        let s = s.strip_suffix('\r').unwrap_or(s);
        Some(Self(s.to_owned()))
    }
}

/// A credential as consumers hold it: an Auth Token, or an API key's SID and secret.
#[derive(Debug, Clone, PartialEq)]
pub struct Credential {
    /// `SK...` for an API key; `None` for an Auth Token.
    pub key_sid: Option<String>,
    pub secret: SecretString,
}

impl Credential {
    pub fn auth_token(token: SecretString) -> Self {
        Self {
            key_sid: None,
            secret: token,
        }
    }
}

impl From<String> for SecretString {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for SecretString {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString([REDACTED])")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = SecretString::new("0123456789abcdef0123456789abcdef");
        assert_eq!(format!("{s}"), "[REDACTED]");
        assert!(!format!("{s:?}").contains("0123"));
        assert!(!format!("{:?}", Some(&s)).contains("0123"));
        assert_eq!(s.expose(), "0123456789abcdef0123456789abcdef");
    }

    #[test]
    fn from_bytes_trims_one_trailing_newline_only() {
        assert_eq!(SecretString::from_bytes(b"abc\n").unwrap().expose(), "abc");
        assert_eq!(
            SecretString::from_bytes(b"abc\r\n").unwrap().expose(),
            "abc"
        );
        assert_eq!(
            SecretString::from_bytes(b" abc ").unwrap().expose(),
            " abc "
        );
        assert!(SecretString::from_bytes(&[0xff, 0xfe]).is_none());
    }
}

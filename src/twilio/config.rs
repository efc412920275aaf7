//! Client configuration and Twilio host names.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rand::Rng;
use url::Url;

use super::error::TwilioError;

/// A Twilio product, i.e. the first label of its host name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Product {
    /// `accounts.twilio.com`: Auth Token rotation.
    Accounts,
    /// `api.twilio.com`: the 2010 REST API (accounts, keys).
    Api,
    /// `iam.twilio.com`: IAM v1 keys (standard and restricted).
    Iam,
}

impl Product {
    pub const ALL: [Product; 3] = [Product::Accounts, Product::Api, Product::Iam];

    pub fn host_prefix(self) -> &'static str {
        match self {
            Product::Accounts => "accounts",
            Product::Api => "api",
            Product::Iam => "iam",
        }
    }
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.host_prefix())
    }
}

/// Builds a Twilio host name the way Twilio's helper libraries do (twilio-python
/// `ClientBase.get_hostname`): `{product}.{edge}.{region}.twilio.com`, where the region
/// defaults to `us1` when only an edge is given, and `{product}.twilio.com` when neither is set.
/// A region without an edge gives `{product}.{region}.twilio.com`, as the libraries do, although
/// Twilio stopped serving such region-only hosts on 2026-04-28 (the client warns about it).
pub fn twilio_host(product: Product, region: Option<&str>, edge: Option<&str>) -> String {
    let region = non_empty(region);
    let edge = non_empty(edge);
    let region = region.or(edge.map(|_| "us1"));
    let mut labels = vec![product.host_prefix()];
    labels.extend(edge);
    labels.extend(region);
    labels.push("twilio");
    labels.push("com");
    labels.join(".")
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// Retry settings: 429s always, transient failures only for idempotent calls.
///
/// The delay before retry `n` (0-based) is uniformly random in
/// `[0, min(max_delay, base_delay × 2ⁿ)]` ("full jitter"), as Twilio's helper libraries do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts per call, including the first. 1 disables retries.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(3),
        }
    }
}

impl RetryPolicy {
    /// Upper bound of the delay before retry number `retry` (0 for the first retry).
    pub fn backoff_ceiling(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.min(31));
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// A full-jitter delay for retry number `retry`.
    pub fn jittered_delay(&self, retry: u32) -> Duration {
        let ceiling = u64::try_from(self.backoff_ceiling(retry).as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=ceiling))
    }
}

/// Operator-wide Twilio client settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioConfig {
    /// Twilio Region (`TWILIO_REGION` in the helper libraries), e.g. `ie1`.
    pub region: Option<String>,
    /// Twilio Edge (`TWILIO_EDGE`), e.g. `dublin`.
    pub edge: Option<String>,
    /// Sends every product to this one base URL as `{base}{path}` (plain paths, e.g.
    /// `http://127.0.0.1:8080/v1/AuthTokens/Secondary`). For the sandbox emulator and tests;
    /// wired to `--twilio-base-url` / `TOKEN_ROTATOR_TWILIO_BASE_URL`.
    pub base_url: Option<Url>,
    /// Per-product base URLs; they win over `base_url` (e.g. one prism mock per spec file).
    pub product_base_urls: BTreeMap<Product, Url>,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Total timeout of one HTTP attempt, from sending to the end of the response body.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// Sends `SuppressEmailNotification=true` when creating, promoting and deleting the
    /// secondary Auth Token, so Twilio does not e-mail the account's owners on every rotation.
    /// The controller sets it per resource from `spec.authToken.suppressEmailNotification`.
    pub suppress_email_notification: bool,
    /// `PageSize` for key listings (1–1000).
    pub page_size: u32,
}

impl Default for TwilioConfig {
    fn default() -> Self {
        Self {
            region: None,
            edge: None,
            base_url: None,
            product_base_urls: BTreeMap::new(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            suppress_email_notification: true,
            page_size: 1000,
        }
    }
}

impl TwilioConfig {
    /// Overrides the base URL of one product (see [`TwilioConfig::product_base_urls`]).
    pub fn with_product_base_url(mut self, product: Product, url: Url) -> Self {
        self.product_base_urls.insert(product, url);
        self
    }

    /// The base URL (scheme, host, optional path prefix, no trailing slash) that `product`'s
    /// request paths are appended to.
    pub fn base_url_for(&self, product: Product) -> Result<String, TwilioError> {
        if let Some(url) = self.product_base_urls.get(&product) {
            return override_base(url);
        }
        if let Some(url) = &self.base_url {
            return override_base(url);
        }
        Ok(format!(
            "https://{}",
            twilio_host(product, self.region.as_deref(), self.edge.as_deref())
        ))
    }

    pub(crate) fn validate(&self) -> Result<(), TwilioError> {
        for (name, value) in [("region", &self.region), ("edge", &self.edge)] {
            if let Some(v) = non_empty(value.as_deref()) {
                let ok = v
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
                if !ok {
                    return Err(TwilioError::Config(format!(
                        "{name} {v:?} is not a host label (lowercase letters, digits, '-')"
                    )));
                }
            }
        }
        if !(1..=1000).contains(&self.page_size) {
            return Err(TwilioError::Config(format!(
                "page_size {} is outside 1..=1000",
                self.page_size
            )));
        }
        if self.retry.max_attempts == 0 {
            return Err(TwilioError::Config(
                "retry.max_attempts must be at least 1".into(),
            ));
        }
        for product in Product::ALL {
            self.base_url_for(product)?;
        }
        Ok(())
    }
}

fn override_base(url: &Url) -> Result<String, TwilioError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TwilioError::Config(format!(
            "base URL scheme {:?} is not http or https",
            url.scheme()
        )));
    }
    // Credentials travel in the Authorization header only; never in a URL that gets logged.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TwilioError::Config(
            "base URL must not contain user info".into(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(TwilioError::Config(
            "base URL must not contain a query or fragment".into(),
        ));
    }
    if url.host_str().is_none() {
        return Err(TwilioError::Config("base URL has no host".into()));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_without_region_or_edge_is_the_global_one() {
        assert_eq!(twilio_host(Product::Api, None, None), "api.twilio.com");
        assert_eq!(
            twilio_host(Product::Accounts, Some(""), Some(" ")),
            "accounts.twilio.com"
        );
    }

    #[test]
    fn host_with_region_only_keeps_the_region() {
        assert_eq!(
            twilio_host(Product::Api, Some("ie1"), None),
            "api.ie1.twilio.com"
        );
    }

    #[test]
    fn host_with_edge_only_defaults_region_to_us1() {
        assert_eq!(
            twilio_host(Product::Iam, None, Some("ashburn")),
            "iam.ashburn.us1.twilio.com"
        );
    }

    #[test]
    fn host_with_region_and_edge() {
        assert_eq!(
            twilio_host(Product::Api, Some("ie1"), Some("dublin")),
            "api.dublin.ie1.twilio.com"
        );
        assert_eq!(
            twilio_host(Product::Accounts, Some("au1"), Some("sydney")),
            "accounts.sydney.au1.twilio.com"
        );
    }

    #[test]
    fn default_base_urls_use_https_product_hosts() {
        let cfg = TwilioConfig {
            region: Some("ie1".into()),
            edge: Some("dublin".into()),
            ..TwilioConfig::default()
        };
        assert_eq!(
            cfg.base_url_for(Product::Iam).unwrap(),
            "https://iam.dublin.ie1.twilio.com"
        );
        assert_eq!(
            TwilioConfig::default()
                .base_url_for(Product::Accounts)
                .unwrap(),
            "https://accounts.twilio.com"
        );
    }

    #[test]
    fn base_url_override_sends_every_product_to_one_host() {
        let cfg = TwilioConfig {
            region: Some("ie1".into()),
            base_url: Some(Url::parse("http://127.0.0.1:8080/").unwrap()),
            ..TwilioConfig::default()
        };
        for p in Product::ALL {
            assert_eq!(cfg.base_url_for(p).unwrap(), "http://127.0.0.1:8080");
        }
    }

    #[test]
    fn product_override_wins_over_the_global_override() {
        let cfg = TwilioConfig {
            base_url: Some(Url::parse("http://127.0.0.1:8080/prefix/").unwrap()),
            ..TwilioConfig::default()
        }
        .with_product_base_url(Product::Iam, Url::parse("http://127.0.0.1:9000").unwrap());
        assert_eq!(
            cfg.base_url_for(Product::Iam).unwrap(),
            "http://127.0.0.1:9000"
        );
        assert_eq!(
            cfg.base_url_for(Product::Api).unwrap(),
            "http://127.0.0.1:8080/prefix"
        );
    }

    #[test]
    fn invalid_overrides_and_labels_are_rejected() {
        let with_user = TwilioConfig {
            base_url: Some(Url::parse("http://AC1:tok@127.0.0.1:1").unwrap()),
            ..TwilioConfig::default()
        };
        let err = with_user.validate().unwrap_err();
        assert!(!err.to_string().contains("tok"), "{err}");
        let bad_region = TwilioConfig {
            region: Some("ie1.evil.com/".into()),
            ..TwilioConfig::default()
        };
        assert!(bad_region.validate().is_err());
        let ftp = TwilioConfig {
            base_url: Some(Url::parse("ftp://127.0.0.1").unwrap()),
            ..TwilioConfig::default()
        };
        assert!(ftp.validate().is_err());
        assert!(TwilioConfig::default().validate().is_ok());
    }

    #[test]
    fn backoff_doubles_from_base_and_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff_ceiling(0), Duration::from_millis(100));
        assert_eq!(p.backoff_ceiling(1), Duration::from_millis(200));
        assert_eq!(p.backoff_ceiling(4), Duration::from_millis(1600));
        assert_eq!(p.backoff_ceiling(5), Duration::from_secs(3));
        assert_eq!(p.backoff_ceiling(200), Duration::from_secs(3));
        for retry in 0..8 {
            assert!(p.jittered_delay(retry) <= p.backoff_ceiling(retry));
        }
    }
}

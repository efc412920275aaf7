//! Maps a request (method, path, optional leading host segment) to an endpoint and region.
//!
//! All products share one port. A client either calls `/v1/Keys` directly (us1) or prefixes the
//! Twilio host it would have called: `/iam.twilio.com/v1/Keys`,
//! `/api.dublin.ie1.twilio.com/2010-04-01/...`. A `Host` header naming a Twilio host works too.

use super::errors::ApiError;
use super::ids::{is_account_sid, is_key_sid};
use super::model::Endpoint;

/// Where a request was addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// Twilio host named by the request, if any.
    pub host: Option<String>,
    /// Product label of that host (`api`, `accounts`, `iam`).
    pub product: Option<String>,
    pub region: String,
    /// Host segment as it appeared in the path (`/iam.twilio.com`), or empty; used to build URLs
    /// that lead back to the same host.
    pub prefix: String,
    /// Path without the host segment.
    pub rest: String,
}

/// A matched endpoint with its path parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Matched {
    pub endpoint: Endpoint,
    pub account_sid: Option<String>,
    pub key_sid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostInfo {
    pub product: String,
    pub edge: Option<String>,
    pub region: String,
    pub region_only: bool,
}

/// Parses `{product}.twilio.com`, `{product}.{region}.twilio.com` (region-only) and
/// `{product}.{edge}.{region}.twilio.com`. A port suffix is ignored.
pub(crate) fn parse_host(host: &str) -> Option<HostInfo> {
    let host = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
    let labels = host.strip_suffix(".twilio.com")?;
    let parts: Vec<&str> = labels.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    match parts.as_slice() {
        [product] => Some(HostInfo {
            product: product.to_string(),
            edge: None,
            region: "us1".into(),
            region_only: false,
        }),
        [product, region] => Some(HostInfo {
            product: product.to_string(),
            edge: None,
            region: region.to_string(),
            region_only: true,
        }),
        [product, edge, region] => Some(HostInfo {
            product: product.to_string(),
            edge: Some(edge.to_string()),
            region: region.to_string(),
            region_only: false,
        }),
        _ => None,
    }
}

/// The Twilio host a request names: its leading host segment, else a `*.twilio.com` `Host`.
pub(crate) fn requested_host(path: &str, host_header: Option<&str>) -> Option<String> {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    if first.contains('.') {
        return Some(first.to_string());
    }
    host_header
        .filter(|h| {
            let name = h.split(':').next().unwrap_or(h).to_ascii_lowercase();
            name.ends_with(".twilio.com")
        })
        .map(str::to_string)
}

/// Splits off a leading host segment (or reads a Twilio `Host` header) and checks the host.
pub(crate) fn target(
    path: &str,
    host_header: Option<&str>,
    refuse_region_only: bool,
) -> Result<Target, ApiError> {
    let trimmed = path.trim_start_matches('/');
    let first = trimmed.split('/').next().unwrap_or("");
    let host = requested_host(path, host_header);
    let (prefix, rest) = if first.contains('.') {
        (
            format!("/{first}"),
            format!("/{}", &trimmed[first.len()..].trim_start_matches('/')),
        )
    } else {
        (String::new(), path.to_string())
    };
    let Some(host) = host else {
        return Ok(Target {
            host: None,
            product: None,
            region: "us1".into(),
            prefix,
            rest,
        });
    };
    let info = parse_host(&host)
        .ok_or_else(|| ApiError::not_found(&rest).with_note(format!("unknown host {host}")))?;
    // api.us1.twilio.com stays valid; other region-only names stopped working on 2026-04-28.
    if info.region_only && info.region != "us1" && refuse_region_only {
        return Err(ApiError::new(
            421,
            20421,
            format!(
                "Region-only host {host} is no longer served; use {}.{{edge}}.{}.twilio.com",
                info.product, info.region
            ),
        )
        .with_note("region-only host refused"));
    }
    Ok(Target {
        host: Some(host),
        product: Some(info.product),
        region: info.region,
        prefix,
        rest,
    })
}

/// Matches the path (without host segment or query) to an endpoint.
pub(crate) fn match_endpoint(method: &http::Method, target: &Target) -> Result<Matched, ApiError> {
    use http::Method as M;
    let path = target.rest.as_str();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let not_found = || ApiError::not_found(path);
    let m = |endpoint, account_sid: Option<&str>, key_sid: Option<&str>| Matched {
        endpoint,
        account_sid: account_sid.map(str::to_string),
        key_sid: key_sid.map(str::to_string),
    };
    let matched = match segs.as_slice() {
        ["v1", "AuthTokens", "Secondary"] => match *method {
            M::POST => m(Endpoint::SecondaryCreate, None, None),
            M::DELETE => m(Endpoint::SecondaryDelete, None, None),
            _ => return Err(ApiError::method_not_allowed()),
        },
        ["v1", "AuthTokens", "Promote"] => match *method {
            M::POST => m(Endpoint::Promote, None, None),
            _ => return Err(ApiError::method_not_allowed()),
        },
        ["2010-04-01", "Accounts", file] => {
            let sid = file.strip_suffix(".json").ok_or_else(not_found)?;
            if !is_account_sid(sid) {
                return Err(not_found());
            }
            match *method {
                M::GET => m(Endpoint::AccountFetch, Some(sid), None),
                _ => return Err(ApiError::method_not_allowed()),
            }
        }
        ["2010-04-01", "Accounts", sid, "Balance.json"] => {
            if !is_account_sid(sid) {
                return Err(not_found());
            }
            match *method {
                M::GET => m(Endpoint::BalanceFetch, Some(sid), None),
                _ => return Err(ApiError::method_not_allowed()),
            }
        }
        ["2010-04-01", "Accounts", sid, "Keys.json"] => {
            if !is_account_sid(sid) {
                return Err(not_found());
            }
            match *method {
                M::GET => m(Endpoint::KeysList, Some(sid), None),
                M::POST => m(Endpoint::KeyCreate, Some(sid), None),
                _ => return Err(ApiError::method_not_allowed()),
            }
        }
        ["2010-04-01", "Accounts", sid, "Keys", file] => {
            let key = file.strip_suffix(".json").ok_or_else(not_found)?;
            if !is_account_sid(sid) || !is_key_sid(key) {
                return Err(not_found());
            }
            match *method {
                M::GET => m(Endpoint::KeyFetch, Some(sid), Some(key)),
                M::POST => m(Endpoint::KeyUpdate, Some(sid), Some(key)),
                M::DELETE => m(Endpoint::KeyDelete, Some(sid), Some(key)),
                _ => return Err(ApiError::method_not_allowed()),
            }
        }
        ["v1", "Keys"] => match *method {
            M::GET => m(Endpoint::IamKeysList, None, None),
            M::POST => m(Endpoint::IamKeyCreate, None, None),
            _ => return Err(ApiError::method_not_allowed()),
        },
        ["v1", "Keys", key] => {
            if !is_key_sid(key) {
                return Err(not_found());
            }
            match *method {
                M::GET => m(Endpoint::IamKeyFetch, None, Some(key)),
                M::POST => m(Endpoint::IamKeyUpdate, None, Some(key)),
                M::DELETE => m(Endpoint::IamKeyDelete, None, Some(key)),
                _ => return Err(ApiError::method_not_allowed()),
            }
        }
        _ => return Err(not_found()),
    };
    // A host of another product does not serve this path (e.g. api.twilio.com/v1/Keys).
    if let Some(product) = &target.product {
        if Some(product.as_str()) != matched.endpoint.product() {
            return Err(not_found().with_note(format!("{product} host does not serve this path")));
        }
    }
    Ok(matched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    const AC: &str = "AC0123456789abcdef0123456789abcdef";
    const SK: &str = "SK0123456789abcdef0123456789abcdef";

    #[test]
    fn hosts() {
        let h = parse_host("api.dublin.ie1.twilio.com").unwrap();
        assert_eq!(
            (
                h.product.as_str(),
                h.edge.as_deref(),
                h.region.as_str(),
                h.region_only
            ),
            ("api", Some("dublin"), "ie1", false)
        );
        let h = parse_host("iam.twilio.com:443").unwrap();
        assert_eq!((h.product.as_str(), h.region.as_str()), ("iam", "us1"));
        assert!(parse_host("api.ie1.twilio.com").unwrap().region_only);
        assert!(parse_host("example.com").is_none());
        assert!(parse_host("a.b.c.d.twilio.com").is_none());
    }

    #[test]
    fn host_segment_gives_region_and_prefix() {
        let t = target("/api.dublin.ie1.twilio.com/2010-04-01/Accounts", None, true).unwrap();
        assert_eq!(t.region, "ie1");
        assert_eq!(t.prefix, "/api.dublin.ie1.twilio.com");
        assert_eq!(t.rest, "/2010-04-01/Accounts");
        let t = target("/v1/Keys", None, true).unwrap();
        assert_eq!(
            (t.region.as_str(), t.prefix.as_str(), t.host),
            ("us1", "", None)
        );
        let t = target("/v1/Keys", Some("iam.sydney.au1.twilio.com"), true).unwrap();
        assert_eq!(t.region, "au1");
        let t = target("/v1/Keys", Some("127.0.0.1:8080"), true).unwrap();
        assert_eq!(t.region, "us1");
    }

    #[test]
    fn region_only_hosts_are_refused_except_us1() {
        let e = target("/api.ie1.twilio.com/2010-04-01/Accounts", None, true).unwrap_err();
        assert_eq!((e.status, e.code), (421, 20421));
        assert!(target("/api.us1.twilio.com/2010-04-01/Accounts", None, true).is_ok());
        let t = target("/api.ie1.twilio.com/2010-04-01/Accounts", None, false).unwrap();
        assert_eq!(t.region, "ie1");
    }

    #[test]
    fn endpoints() {
        let ep = |method: Method, path: &str| {
            let t = target(path, None, true).unwrap();
            match_endpoint(&method, &t).map(|m| m.endpoint)
        };
        assert_eq!(
            ep(Method::POST, "/accounts.twilio.com/v1/AuthTokens/Secondary"),
            Ok(Endpoint::SecondaryCreate)
        );
        assert_eq!(
            ep(Method::DELETE, "/v1/AuthTokens/Secondary"),
            Ok(Endpoint::SecondaryDelete)
        );
        assert_eq!(
            ep(Method::POST, "/v1/AuthTokens/Promote"),
            Ok(Endpoint::Promote)
        );
        assert_eq!(
            ep(Method::GET, &format!("/2010-04-01/Accounts/{AC}.json")),
            Ok(Endpoint::AccountFetch)
        );
        assert_eq!(
            ep(
                Method::POST,
                &format!("/2010-04-01/Accounts/{AC}/Keys.json")
            ),
            Ok(Endpoint::KeyCreate)
        );
        assert_eq!(
            ep(
                Method::DELETE,
                &format!("/2010-04-01/Accounts/{AC}/Keys/{SK}.json")
            ),
            Ok(Endpoint::KeyDelete)
        );
        assert_eq!(
            ep(Method::GET, "/iam.twilio.com/v1/Keys"),
            Ok(Endpoint::IamKeysList)
        );
        assert_eq!(
            ep(Method::POST, &format!("/v1/Keys/{SK}")),
            Ok(Endpoint::IamKeyUpdate)
        );
        assert_eq!(
            ep(Method::GET, "/v1/AuthTokens/Promote")
                .unwrap_err()
                .status,
            405
        );
        assert_eq!(ep(Method::GET, "/v1/Nope").unwrap_err().code, 20404);
        // Wrong product host.
        assert_eq!(
            ep(Method::GET, "/api.twilio.com/v1/Keys")
                .unwrap_err()
                .status,
            404
        );
        // Malformed sids.
        assert_eq!(
            ep(Method::GET, "/2010-04-01/Accounts/ACnothex.json")
                .unwrap_err()
                .status,
            404
        );
    }
}

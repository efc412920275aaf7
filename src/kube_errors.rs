//! Kubernetes API errors in one line, as kubectl shows them: the API server's message, its
//! code and reason, never a Debug dump of the `Status` object.

/// One line for `e`.
pub fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => {
            let message = s.message.trim_end_matches('.');
            match s.reason.as_str() {
                "" => format!("{message} (HTTP {})", s.code),
                reason => format!("{message} (HTTP {} {reason})", s.code),
            }
        }
        other => other.to_string(),
    }
}

/// The API server does not serve the resource at all (its CRD is not installed).
pub fn resource_missing(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// What to run to install the CRDs.
pub const INSTALL_CRDS: &str = "The token-rotator CRDs are not installed: install them with `token-rotator crd | kubectl apply -f -` (or the Helm chart)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_are_one_line_without_the_status_struct() {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure",
            "message": "the server could not find the requested resource",
            "reason": "NotFound",
            "code": 404
        }))
        .unwrap();
        let e = kube::Error::Api(status.into());
        let line = describe(&e);
        assert_eq!(
            line,
            "the server could not find the requested resource (HTTP 404 NotFound)"
        );
        assert!(!line.contains("Status {") && !line.contains('\n'));
        assert!(resource_missing(&e));
    }
}

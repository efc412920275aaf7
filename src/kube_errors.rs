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
        other => {
            // The cause chain says what actually failed (refused, timed out, TLS), which the
            // top-level message ("ServiceError: client error (Connect)") does not.
            let mut line = other.to_string();
            let mut cause = std::error::Error::source(other);
            while let Some(c) = cause {
                let text = c.to_string();
                if !line.contains(&text) {
                    line.push_str(": ");
                    line.push_str(&text);
                }
                cause = c.source();
            }
            if unreachable(other) {
                line.push_str(UNREACHABLE_HINT);
            }
            line
        }
    }
}

/// What to check when the API server cannot be reached.
const UNREACHABLE_HINT: &str = " (is the cluster up, and do --kubeconfig / --context name it?)";

fn unreachable(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Service(_) | kube::Error::HyperError(_))
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

//! Content negotiation: the output form a client asked for in `Accept`.

use crate::kube::error::ApiError;
use crate::kube::table::Include;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
    Table,
    Meta,
}

const SUPPORTED: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/json;stream=watch",
];

/// Picks the first acceptable media type; `as=Table` and `as=PartialObjectMetadata[List]` in meta.k8s.io/v1.
pub fn negotiate(accept: Option<&str>) -> Result<Format, ApiError> {
    let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
        return Ok(Format::Json);
    };
    for item in accept.split(',') {
        let mut parts = item.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let mut as_ = None;
        let mut g = None;
        let mut v = None;
        for p in parts {
            if let Some((k, val)) = p.split_once('=') {
                match k.trim() {
                    "as" => as_ = Some(val.trim().to_string()),
                    "g" => g = Some(val.trim().to_string()),
                    "v" => v = Some(val.trim().to_string()),
                    _ => {}
                }
            }
        }
        let json_like = matches!(media.as_str(), "application/json" | "*/*" | "application/*");
        match as_.as_deref() {
            Some("Table")
                if json_like
                    && g.as_deref() == Some("meta.k8s.io")
                    && v.as_deref() == Some("v1") =>
            {
                return Ok(Format::Table)
            }
            Some("PartialObjectMetadata") | Some("PartialObjectMetadataList")
                if json_like
                    && g.as_deref() == Some("meta.k8s.io")
                    && v.as_deref() == Some("v1") =>
            {
                return Ok(Format::Meta)
            }
            Some(_) => continue,
            None => {}
        }
        if json_like {
            return Ok(Format::Json);
        }
        if media == "application/yaml" {
            return Ok(Format::Yaml);
        }
    }
    Err(ApiError::not_acceptable(SUPPORTED))
}

pub fn include_object(q: Option<&str>) -> Include {
    match q {
        Some("None") => Include::None,
        Some("Object") => Include::Object,
        _ => Include::Metadata,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_and_client_go_accept_headers() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(negotiate(Some(kubectl)).unwrap(), Format::Table);
        assert_eq!(
            negotiate(Some("application/vnd.kubernetes.protobuf,application/json")).unwrap(),
            Format::Json
        );
        assert_eq!(
            negotiate(Some(
                "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
            ))
            .unwrap(),
            Format::Meta
        );
        assert_eq!(
            negotiate(Some(
                "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
            ))
            .unwrap(),
            Format::Json
        );
        assert_eq!(
            negotiate(Some("application/vnd.kubernetes.protobuf"))
                .unwrap_err()
                .code,
            406
        );
    }
}

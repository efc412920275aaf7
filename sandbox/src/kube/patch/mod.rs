//! Patch formats: JSON patch, merge patch, strategic merge patch and server-side apply.

pub mod fieldset;
pub mod jsonpatch;
pub mod managed;
pub mod strategic;

pub const JSON_PATCH: &str = "application/json-patch+json";
pub const MERGE_PATCH: &str = "application/merge-patch+json";
pub const STRATEGIC_PATCH: &str = "application/strategic-merge-patch+json";
pub const APPLY_PATCH: &str = "application/apply-patch+yaml";
pub const APPLY_PATCH_CBOR: &str = "application/apply-patch+cbor";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            JSON_PATCH => Some(PatchType::Json),
            MERGE_PATCH => Some(PatchType::Merge),
            STRATEGIC_PATCH => Some(PatchType::Strategic),
            APPLY_PATCH => Some(PatchType::Apply),
            _ => None,
        }
    }
}

/// RFC 7386 merge patch.
pub fn merge_patch(doc: &serde_json::Value, patch: &serde_json::Value) -> serde_json::Value {
    let mut out = doc.clone();
    json_patch::merge(&mut out, patch);
    out
}

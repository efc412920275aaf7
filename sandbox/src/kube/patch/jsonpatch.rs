//! RFC 6902 JSON patch, with the apiserver's leniency: `test` for null on a missing path succeeds.

use json_patch::PatchOperation;
use serde_json::Value;

pub enum JsonPatchError {
    /// The patch document itself is malformed (400).
    Decode(String),
    /// An operation failed (422).
    Apply(String),
}

pub fn apply(doc: &Value, patch: &[u8]) -> Result<Value, JsonPatchError> {
    let ops: Vec<PatchOperation> =
        serde_json::from_slice(patch).map_err(|e| JsonPatchError::Decode(e.to_string()))?;
    let mut out = doc.clone();
    for op in &ops {
        if let PatchOperation::Test(t) = op {
            if t.value.is_null() && out.pointer(t.path.as_str()).is_none_or(|v| v.is_null()) {
                continue;
            }
        }
        json_patch::patch(&mut out, std::slice::from_ref(op))
            .map_err(|e| JsonPatchError::Apply(e.to_string()))?;
    }
    Ok(out)
}

//! Pod-template hashes, shaped like the controllers' (`fnv32a`, then `rand.SafeEncodeString`).

use k8s_openapi::api::core::v1::PodTemplateSpec;

const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Hash of a pod template, e.g. `7d9f8b5c6`. Equal templates give equal hashes.
pub fn template_hash(template: &PodTemplateSpec) -> String {
    // k8s-openapi serialises maps as BTreeMaps, so the encoding is canonical.
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h.to_string()
        .bytes()
        .map(|d| SAFE_ALPHABET[usize::from(d) % SAFE_ALPHABET.len()] as char)
        .collect()
}

/// Random pod-name suffix of `len` safe characters.
pub fn random_suffix(len: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..len)
        .map(|_| SAFE_ALPHABET[rng.random_range(0..SAFE_ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn template(annotation: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                annotations: Some(BTreeMap::from([("a".to_owned(), annotation.to_owned())])),
                ..Default::default()
            }),
            spec: None,
        }
    }

    #[test]
    fn equal_templates_hash_equal_and_changes_differ() {
        assert_eq!(template_hash(&template("1")), template_hash(&template("1")));
        assert_ne!(template_hash(&template("1")), template_hash(&template("2")));
        let h = template_hash(&template("1"));
        assert!(!h.is_empty() && h.bytes().all(|b| SAFE_ALPHABET.contains(&b)));
    }
}

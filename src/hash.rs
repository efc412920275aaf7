//! FNV-1a: a tiny hash whose values are stable across releases (unlike std's hasher), for
//! names and delays that must come out the same on every run.

pub fn fnv1a32(bytes: impl IntoIterator<Item = u8>) -> u32 {
    let mut h: u32 = 0x811c9dc5;
    for b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x01000193);
    }
    h
}

pub fn fnv1a64(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values of the FNV-1a specification.
    #[test]
    fn matches_the_reference_values() {
        assert_eq!(fnv1a32(*b""), 0x811c9dc5);
        assert_eq!(fnv1a32(*b"a"), 0xe40c292c);
        assert_eq!(fnv1a64(*b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(*b"a"), 0xaf63dc4c8601ec8c);
    }
}

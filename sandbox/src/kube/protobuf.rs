//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`).
//! client-go's typed clientsets (kubectl create <kind>, helm's release storage) send protobuf
//! and do not fall back to JSON on 415, so the kinds they write this way are decoded here from
//! a field table of their generated.proto messages. Other kinds still get 415.

use base64::Engine;
use serde_json::{json, Map, Value};

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Bytes,
    Int,
    Bool,
    Msg(&'static [F]),
    MapStrStr,
    MapStrBytes,
    Time,
    RawJson,
}

#[derive(Clone, Copy)]
struct F {
    num: u64,
    name: &'static str,
    kind: Kind,
    repeated: bool,
}

const fn f(num: u64, name: &'static str, kind: Kind) -> F {
    F {
        num,
        name,
        kind,
        repeated: false,
    }
}
const fn r(num: u64, name: &'static str, kind: Kind) -> F {
    F {
        num,
        name,
        kind,
        repeated: true,
    }
}

const TYPE_META: &[F] = &[f(1, "apiVersion", Kind::Str), f(2, "kind", Kind::Str)];
const OWNER_REF: &[F] = &[
    f(1, "kind", Kind::Str),
    f(3, "name", Kind::Str),
    f(4, "uid", Kind::Str),
    f(5, "apiVersion", Kind::Str),
    f(6, "controller", Kind::Bool),
    f(7, "blockOwnerDeletion", Kind::Bool),
];
const MANAGED: &[F] = &[
    f(1, "manager", Kind::Str),
    f(2, "operation", Kind::Str),
    f(3, "apiVersion", Kind::Str),
    f(4, "time", Kind::Time),
    f(6, "fieldsType", Kind::Str),
    f(7, "fieldsV1", Kind::RawJson),
    f(8, "subresource", Kind::Str),
];
const OBJECT_META: &[F] = &[
    f(1, "name", Kind::Str),
    f(2, "generateName", Kind::Str),
    f(3, "namespace", Kind::Str),
    f(4, "selfLink", Kind::Str),
    f(5, "uid", Kind::Str),
    f(6, "resourceVersion", Kind::Str),
    f(7, "generation", Kind::Int),
    f(8, "creationTimestamp", Kind::Time),
    f(9, "deletionTimestamp", Kind::Time),
    f(10, "deletionGracePeriodSeconds", Kind::Int),
    f(11, "labels", Kind::MapStrStr),
    f(12, "annotations", Kind::MapStrStr),
    r(13, "ownerReferences", Kind::Msg(OWNER_REF)),
    r(14, "finalizers", Kind::Str),
    r(17, "managedFields", Kind::Msg(MANAGED)),
];
const OBJECT_REF: &[F] = &[
    f(1, "kind", Kind::Str),
    f(2, "namespace", Kind::Str),
    f(3, "name", Kind::Str),
    f(4, "uid", Kind::Str),
    f(5, "apiVersion", Kind::Str),
    f(6, "resourceVersion", Kind::Str),
    f(7, "fieldPath", Kind::Str),
];
const LOCAL_REF: &[F] = &[f(1, "name", Kind::Str)];
const SECRET: &[F] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(2, "data", Kind::MapStrBytes),
    f(3, "type", Kind::Str),
    f(4, "stringData", Kind::MapStrStr),
    f(5, "immutable", Kind::Bool),
];
const CONFIG_MAP: &[F] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(2, "data", Kind::MapStrStr),
    f(3, "binaryData", Kind::MapStrBytes),
    f(4, "immutable", Kind::Bool),
];
const NAMESPACE_SPEC: &[F] = &[r(1, "finalizers", Kind::Str)];
const NAMESPACE_STATUS: &[F] = &[f(1, "phase", Kind::Str)];
const NAMESPACE: &[F] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(2, "spec", Kind::Msg(NAMESPACE_SPEC)),
    f(3, "status", Kind::Msg(NAMESPACE_STATUS)),
];
const SERVICE_ACCOUNT: &[F] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    r(2, "secrets", Kind::Msg(OBJECT_REF)),
    r(3, "imagePullSecrets", Kind::Msg(LOCAL_REF)),
    f(4, "automountServiceAccountToken", Kind::Bool),
];
const PRECONDITIONS: &[F] = &[f(1, "uid", Kind::Str), f(2, "resourceVersion", Kind::Str)];
const DELETE_OPTIONS: &[F] = &[
    f(1, "gracePeriodSeconds", Kind::Int),
    f(2, "preconditions", Kind::Msg(PRECONDITIONS)),
    f(3, "orphanDependents", Kind::Bool),
    f(4, "propagationPolicy", Kind::Str),
    r(5, "dryRun", Kind::Str),
];
const RESOURCE_ATTRIBUTES: &[F] = &[
    f(1, "namespace", Kind::Str),
    f(2, "verb", Kind::Str),
    f(3, "group", Kind::Str),
    f(4, "version", Kind::Str),
    f(5, "resource", Kind::Str),
    f(6, "subresource", Kind::Str),
    f(7, "name", Kind::Str),
];
const NON_RESOURCE_ATTRIBUTES: &[F] = &[f(1, "path", Kind::Str), f(2, "verb", Kind::Str)];
const SSAR_SPEC: &[F] = &[
    f(1, "resourceAttributes", Kind::Msg(RESOURCE_ATTRIBUTES)),
    f(
        2,
        "nonResourceAttributes",
        Kind::Msg(NON_RESOURCE_ATTRIBUTES),
    ),
];
const SELF_SUBJECT_ACCESS_REVIEW: &[F] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(2, "spec", Kind::Msg(SSAR_SPEC)),
];
const SSRR_SPEC: &[F] = &[f(1, "namespace", Kind::Str)];
const SELF_SUBJECT_RULES_REVIEW: &[F] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(2, "spec", Kind::Msg(SSRR_SPEC)),
];
const SELF_SUBJECT_REVIEW: &[F] = &[f(1, "metadata", Kind::Msg(OBJECT_META))];
const BOUND_OBJECT_REF: &[F] = &[
    f(1, "kind", Kind::Str),
    f(2, "apiVersion", Kind::Str),
    f(3, "name", Kind::Str),
    f(4, "uid", Kind::Str),
];
const TOKEN_REQUEST_SPEC: &[F] = &[
    r(1, "audiences", Kind::Str),
    f(3, "boundObjectRef", Kind::Msg(BOUND_OBJECT_REF)),
    f(4, "expirationSeconds", Kind::Int),
];
const TOKEN_REQUEST: &[F] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(2, "spec", Kind::Msg(TOKEN_REQUEST_SPEC)),
];
const UNKNOWN: &[F] = &[
    f(1, "typeMeta", Kind::Msg(TYPE_META)),
    f(2, "raw", Kind::Bytes),
];

pub const MAGIC: &[u8] = b"k8s\x00";
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }
    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = self.varint()? as usize;
        let end = self
            .pos
            .checked_add(len)
            .filter(|e| *e <= self.b.len())
            .ok_or("truncated field")?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn skip(&mut self, wire: u64) -> Result<(), String> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => {
                self.pos += 8;
                Ok(())
            }
            2 => self.bytes().map(|_| ()),
            5 => {
                self.pos += 4;
                Ok(())
            }
            w => Err(format!("unsupported wire type {w}")),
        }
    }
}

fn utf8(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|e| e.to_string())
}

fn time(b: &[u8]) -> Result<Value, String> {
    let mut rd = Reader { b, pos: 0 };
    let (mut secs, mut nanos) = (0i64, 0u32);
    while rd.pos < b.len() {
        let key = rd.varint()?;
        match (key >> 3, key & 7) {
            (1, 0) => secs = rd.varint()? as i64,
            (2, 0) => nanos = rd.varint()? as u32,
            (_, w) => rd.skip(w)?,
        }
    }
    let t = chrono::DateTime::from_timestamp(secs, nanos).ok_or("invalid time")?;
    Ok(json!(t.format("%Y-%m-%dT%H:%M:%SZ").to_string()))
}

fn map_entry(b: &[u8], bytes_value: bool) -> Result<(String, Value), String> {
    let mut rd = Reader { b, pos: 0 };
    let (mut k, mut v) = (String::new(), json!(""));
    while rd.pos < b.len() {
        let key = rd.varint()?;
        match (key >> 3, key & 7) {
            (1, 2) => k = utf8(rd.bytes()?)?,
            (2, 2) => {
                let raw = rd.bytes()?;
                v = if bytes_value {
                    json!(base64::engine::general_purpose::STANDARD.encode(raw))
                } else {
                    json!(utf8(raw)?)
                };
            }
            (_, w) => rd.skip(w)?,
        }
    }
    Ok((k, v))
}

fn message(b: &[u8], fields: &[F]) -> Result<Map<String, Value>, String> {
    let mut rd = Reader { b, pos: 0 };
    let mut out = Map::new();
    while rd.pos < b.len() {
        let key = rd.varint()?;
        let (num, wire) = (key >> 3, key & 7);
        let Some(fd) = fields.iter().find(|f| f.num == num) else {
            rd.skip(wire)?;
            continue;
        };
        let val = match fd.kind {
            Kind::Str => json!(utf8(rd.bytes()?)?),
            Kind::Bytes => json!(base64::engine::general_purpose::STANDARD.encode(rd.bytes()?)),
            Kind::Int => json!(rd.varint()? as i64),
            Kind::Bool => json!(rd.varint()? != 0),
            Kind::Msg(sub) => Value::Object(message(rd.bytes()?, sub)?),
            Kind::Time => {
                let b = rd.bytes()?;
                if b.is_empty() {
                    continue;
                }
                time(b)?
            }
            Kind::RawJson => {
                let inner = message(rd.bytes()?, &[f(1, "Raw", Kind::Bytes)])?;
                let raw = inner.get("Raw").and_then(|r| r.as_str()).unwrap_or("");
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(raw)
                    .map_err(|e| e.to_string())?;
                serde_json::from_slice(&bytes).unwrap_or(json!({}))
            }
            Kind::MapStrStr | Kind::MapStrBytes => {
                let (k, v) = map_entry(rd.bytes()?, matches!(fd.kind, Kind::MapStrBytes))?;
                let m = out.entry(fd.name).or_insert_with(|| json!({}));
                if let Some(m) = m.as_object_mut() {
                    m.insert(k, v);
                }
                continue;
            }
        };
        // Go's protobuf writes empty scalars that JSON (omitempty) leaves out.
        let empty = matches!(&val, Value::String(x) if x.is_empty())
            || (matches!(fd.kind, Kind::Int) && val == json!(0));
        if empty && !fd.repeated {
            continue;
        }
        if fd.repeated {
            let arr = out.entry(fd.name).or_insert_with(|| json!([]));
            if let Some(a) = arr.as_array_mut() {
                a.push(val);
            }
        } else {
            out.insert(fd.name.to_string(), val);
        }
    }
    Ok(out)
}

fn table_for(kind: &str) -> Option<&'static [F]> {
    Some(match kind {
        "Secret" => SECRET,
        "ConfigMap" => CONFIG_MAP,
        "Namespace" => NAMESPACE,
        "ServiceAccount" => SERVICE_ACCOUNT,
        "DeleteOptions" => DELETE_OPTIONS,
        "SelfSubjectAccessReview" => SELF_SUBJECT_ACCESS_REVIEW,
        "SelfSubjectRulesReview" => SELF_SUBJECT_RULES_REVIEW,
        "SelfSubjectReview" => SELF_SUBJECT_REVIEW,
        "TokenRequest" => TOKEN_REQUEST,
        _ => return None,
    })
}

/// Decodes a `k8s\0`-prefixed runtime.Unknown envelope into the JSON form of the object.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or("missing protobuf magic prefix")?;
    let env = message(rest, UNKNOWN)?;
    let tm = env.get("typeMeta").cloned().unwrap_or(json!({}));
    let kind = tm
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or("")
        .to_string();
    let table =
        table_for(&kind).ok_or_else(|| format!("no protobuf decoding for kind {kind:?}"))?;
    let raw = env.get("raw").and_then(|r| r.as_str()).unwrap_or("");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .map_err(|e| e.to_string())?;
    let mut obj = message(&raw, table)?;
    if let Some(av) = tm
        .get("apiVersion")
        .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
    {
        obj.insert("apiVersion".into(), av.clone());
    }
    obj.insert("kind".into(), json!(kind));
    Ok(Value::Object(obj))
}

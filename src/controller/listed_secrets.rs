//! A LIST page of Secrets read for the copy check ([`super::copies`]). Of each Secret only
//! its name, whether it is a staging Secret, and the keys whose value is the credential being
//! replaced are kept. The body is read as it arrives with every long string cut short
//! ([`Shortened`]), so a page over 1 MiB Secrets holds a few KiB of each, and pages can be as
//! large as the API server serves them.

use crate::secret::SecretString;
use base64::Engine;
use futures::{AsyncBufRead, AsyncBufReadExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use kube::api::ListParams;
use kube::Client;
use serde::de::IgnoredAny;
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::hash_map::RandomState;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};

/// A value longer than this is not a copy of a token (tokens are 32 characters).
const MAX_VALUE: usize = 4096;
/// Base64 of [`MAX_VALUE`] bytes: a longer value is skipped without being decoded.
const MAX_ENCODED: usize = MAX_VALUE.div_ceil(3) * 4;
/// Pages read at once, process-wide. The client's read buffer of a connection grows to
/// ~400 KiB while a page of large Secrets streams in: without a bound, every reconcile slot
/// could hold one (measured: 100 rotations at once over 1 MiB Secrets, +19 MiB; with the
/// bound, +10 MiB).
static READING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// Whether a value is the credential being replaced (also with surrounding whitespace, as a
/// file written by `echo` has). Compared by a keyed hash (SipHash with a random key per scan),
/// so no digest that could be matched elsewhere is kept.
pub(super) struct Wanted {
    state: RandomState,
    hash: u64,
}

impl Wanted {
    pub fn new(old: &SecretString) -> Self {
        let state = RandomState::new();
        let hash = keyed(&state, old.expose().trim().as_bytes());
        Self { state, hash }
    }

    /// `encoded` is a Secret's value as the API serves it, in base64.
    fn is(&self, encoded: &str) -> bool {
        if encoded.len() > MAX_ENCODED {
            return false;
        }
        // Not base64 (no API server serves that): not a copy.
        let Ok(v) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
            return false;
        };
        v.len() <= MAX_VALUE && keyed(&self.state, v.trim_ascii()) == self.hash
    }
}

fn keyed(state: &RandomState, v: &[u8]) -> u64 {
    let mut h = state.build_hasher();
    h.write(v);
    h.finish()
}

/// A Secret holding the credential under `keys`.
#[derive(Debug, PartialEq)]
pub(super) struct Holder {
    pub name: String,
    /// Labelled as a rotation's staging Secret.
    pub staging: bool,
    pub keys: Vec<String>,
}

#[derive(Debug, Default, PartialEq)]
pub(super) struct Page {
    pub holders: Vec<Holder>,
    /// Secrets on the page.
    pub secrets: usize,
    /// Where the next page starts; `None` after the last.
    pub next: Option<String>,
}

pub(super) async fn list(
    client: &Client,
    namespace: &str,
    lp: &ListParams,
    wanted: &Wanted,
) -> Result<Page, kube::Error> {
    let req = kube::core::Request::new(format!("/api/v1/namespaces/{namespace}/secrets"))
        .list(lp)
        .map_err(kube::Error::BuildRequest)?;
    // Never closed, so acquiring only waits.
    let _reading = READING.acquire().await;
    let body = client.request_stream(req).await?;
    let mut body = std::pin::pin!(body);
    let mut text = Shortened::default();
    loop {
        let chunk = body.fill_buf().await.map_err(kube::Error::ReadEvents)?;
        if chunk.is_empty() {
            break;
        }
        let n = chunk.len();
        text.push(chunk);
        body.as_mut().consume(n);
    }
    read(&text.out, wanted).map_err(kube::Error::SerdeError)
}

/// Parses one page: of each Secret, the keys whose value is the credential.
fn read(text: &[u8], wanted: &Wanted) -> Result<Page, serde_json::Error> {
    let list: List = serde_json::from_slice(text)?;
    let secrets = list.items.len();
    let holders = list
        .items
        .into_iter()
        .filter_map(|s| {
            let keys: Vec<String> = s
                .data
                .into_iter()
                .flatten()
                .filter(|(_, v)| v.as_ref().is_some_and(|v| wanted.is(&v.0)))
                .map(|(k, _)| k.0.into_owned())
                .collect();
            (!keys.is_empty()).then(|| Holder {
                name: s.metadata.name.into_owned(),
                staging: s
                    .metadata
                    .labels
                    .is_some_and(|l| l.contains_key(crate::api::STAGING_LABEL)),
                keys,
            })
        })
        .collect();
    Ok(Page {
        holders,
        secrets,
        next: list.metadata.continue_.filter(|c| !c.is_empty()),
    })
}

/// A page's JSON text as it arrives, every string cut after [`SHORTENED`] bytes of text: the
/// page is parsed once whole, and a Secret's value can be 1 MiB. A value that could be the
/// credential (base64 of a token and some whitespace, no escapes) is far shorter and never
/// cut; a cut one is still longer than [`MAX_ENCODED`], so no copy either way. Nothing else
/// read (names, labels, the continue token) is that long. A string is cut only before an
/// ASCII byte at least six bytes past a backslash, so never inside a character or an escape.
#[derive(Default)]
struct Shortened {
    out: Vec<u8>,
    state: Lexing,
}

impl Shortened {
    /// Appends the next bytes of the text, long strings cut.
    fn push(&mut self, input: &[u8]) {
        for &b in input {
            let (next, keep) = step(self.state, b);
            self.state = next;
            if keep {
                self.out.push(b);
            }
        }
    }
}

/// Bytes of a string kept: more than any value compared.
const SHORTENED: usize = MAX_ENCODED + 1;

#[derive(Clone, Copy, Default)]
enum Lexing {
    #[default]
    Outside,
    /// `len` bytes kept of the string, `plain` bytes since its last backslash.
    String {
        len: usize,
        plain: usize,
        escaped: bool,
    },
    /// Dropping the rest of a long string up to its closing quote.
    Dropping { escaped: bool },
}

/// The lexer's next state after byte `b`, and whether `b` is kept.
fn step(state: Lexing, b: u8) -> (Lexing, bool) {
    match state {
        Lexing::Outside if b == b'"' => (
            Lexing::String {
                len: 0,
                plain: usize::MAX,
                escaped: false,
            },
            true,
        ),
        Lexing::Outside => (Lexing::Outside, true),
        Lexing::String {
            escaped: true, len, ..
        } => (
            Lexing::String {
                len: len + 1,
                plain: 0,
                escaped: false,
            },
            true,
        ),
        Lexing::String { .. } if b == b'"' => (Lexing::Outside, true),
        Lexing::String { len, .. } if b == b'\\' => (
            Lexing::String {
                len: len + 1,
                plain: 0,
                escaped: true,
            },
            true,
        ),
        Lexing::String { len, plain, .. } if len >= SHORTENED && b.is_ascii() && plain >= 6 => {
            (Lexing::Dropping { escaped: false }, false)
        }
        Lexing::String { len, plain, .. } => (
            Lexing::String {
                len: len + 1,
                plain: plain.saturating_add(1),
                escaped: false,
            },
            true,
        ),
        Lexing::Dropping { escaped: true } => (Lexing::Dropping { escaped: false }, false),
        Lexing::Dropping { .. } if b == b'\\' => (Lexing::Dropping { escaped: true }, false),
        Lexing::Dropping { .. } if b == b'"' => (Lexing::Outside, true),
        Lexing::Dropping { .. } => (Lexing::Dropping { escaped: false }, false),
    }
}

/// A page as parsed: borrowed from the (cut) text, which is parsed once whole.
#[derive(Deserialize)]
struct List<'a> {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default, borrow)]
    items: Vec<Listed<'a>>,
}

#[derive(Deserialize)]
struct Listed<'a> {
    #[serde(default, borrow)]
    metadata: Meta<'a>,
    /// Values as served, in base64; a null value is no copy.
    #[serde(default, borrow)]
    data: Option<BTreeMap<Text<'a>, Option<Text<'a>>>>,
}

#[derive(Default, Deserialize)]
struct Meta<'a> {
    #[serde(default, borrow)]
    name: Cow<'a, str>,
    #[serde(default)]
    labels: Option<BTreeMap<String, IgnoredAny>>,
}

/// A string lent by the text (copied only if it has escapes): serde borrows a `Cow` only
/// when it is a field itself, not inside a map.
#[derive(Deserialize, PartialEq, Eq, PartialOrd, Ord)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use serde_json::json;

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    fn page(v: serde_json::Value, token: &str) -> Page {
        let wanted = Wanted::new(&SecretString::new(token.to_owned()));
        let mut text = Shortened::default();
        text.push(&serde_json::to_vec(&v).unwrap());
        read(&text.out, &wanted).unwrap()
    }

    #[test]
    fn a_page_yields_only_the_keys_holding_the_credential() {
        let token = "0123456789abcdef0123456789abcdef";
        let big = "x".repeat(1 << 20);
        let p = page(
            json!({
                "kind": "SecretList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": "7", "continue": "next-page"},
                "items": [
                    // data before metadata, as a sorted map serializes it
                    {"data": {"a": b64(token), "b": b64("other"), "c": b64(&format!("{token}\n"))},
                     "metadata": {"name": "copy", "namespace": "ns",
                                  "managedFields": [{"manager": "kubectl"}]},
                     "type": "Opaque"},
                    {"metadata": {"name": "staged", "labels": {"tokenrotator.io/staging-for": "x"}},
                     "data": {"token": b64(token)}},
                    {"metadata": {"name": "big"}, "data": {"blob": b64(&big), "n": null}},
                    {"metadata": {"name": "empty"}},
                    {"metadata": {"name": "no-data"}, "data": null},
                    {"metadata": {"name": "longer"}, "data": {"k": b64(&format!("{token}{token}"))}},
                ]
            }),
            token,
        );
        assert_eq!(
            p,
            Page {
                holders: vec![
                    Holder {
                        name: "copy".into(),
                        staging: false,
                        keys: vec!["a".into(), "c".into()]
                    },
                    Holder {
                        name: "staged".into(),
                        staging: true,
                        keys: vec!["token".into()]
                    },
                ],
                secrets: 6,
                next: Some("next-page".into()),
            }
        );
        let last = page(json!({"metadata": {"continue": ""}, "items": []}), token);
        assert_eq!((last.secrets, last.next), (0, None));
    }

    #[test]
    fn a_value_up_to_the_limit_is_compared_and_a_longer_one_is_not() {
        let token = format!("{}tok", " ".repeat(MAX_VALUE - 3));
        let at_limit = page(
            json!({"items": [{"metadata": {"name": "s"}, "data": {"k": b64(&token)}}]}),
            &token,
        );
        assert_eq!(at_limit.holders.len(), 1, "{MAX_VALUE} bytes are compared");
        let over = format!("{token} ");
        let p = page(
            json!({"items": [{"metadata": {"name": "s"}, "data": {"k": b64(&over)}}]}),
            &token,
        );
        assert!(p.holders.is_empty(), "over {MAX_VALUE} bytes is no copy");
    }

    #[test]
    fn long_strings_are_cut_whole_and_the_rest_is_kept_as_written() {
        // Escapes (\\, \", and \u00e9 for é) and a character of two bytes (ü) all along.
        let long = "é\\\"üabcdef".repeat(3000);
        let doc = json!({"a": long, "b": ["x\"y", "z"], "c": "A".repeat(10_000), "d": 5});
        let text = serde_json::to_string(&doc).unwrap().replace('é', "\\u00e9");
        let mut whole = Shortened::default();
        whole.push(text.as_bytes());
        let back: serde_json::Value = serde_json::from_slice(&whole.out).unwrap();
        let a = back["a"].as_str().unwrap();
        // Escapes take more bytes in the text than in the string.
        assert!(long.starts_with(a) && a.len() > MAX_ENCODED / 2 && a.len() < long.len());
        assert_eq!(back["b"], doc["b"]);
        assert_eq!(back["c"].as_str().unwrap(), "A".repeat(SHORTENED));
        assert_eq!(back["d"], 5);
        // Arriving a byte at a time, the same text.
        let mut bytes = Shortened::default();
        for b in text.as_bytes().chunks(1) {
            bytes.push(b);
        }
        assert_eq!(bytes.out, whole.out);
    }

    #[test]
    fn values_and_names_are_lent_by_the_text() {
        let text = br#"{"items": [{"metadata": {"name": "s"}, "data": {"k": "dG9r"}}]}"#;
        let list: List = serde_json::from_slice(text).unwrap();
        let s = &list.items[0];
        assert!(matches!(s.metadata.name, Cow::Borrowed("s")));
        let (k, v) = s.data.as_ref().unwrap().iter().next().unwrap();
        assert!(matches!(k.0, Cow::Borrowed("k")));
        assert!(matches!(v.as_ref().unwrap().0, Cow::Borrowed("dG9r")));
    }

    #[test]
    fn no_value_reaches_an_error() {
        let token = "0123456789abcdef0123456789abcdef";
        let wanted = Wanted::new(&SecretString::new(token.to_owned()));
        let body = format!(
            r#"{{"items": [{{"metadata": {{"name": "s"}}, "data": {{"k": "{}"#,
            b64(token)
        );
        let err = read(body.as_bytes(), &wanted).unwrap_err().to_string();
        assert!(!err.contains(&b64(token)) && !err.contains(token), "{err}");
    }
}

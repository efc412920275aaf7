//! Label selectors (equality and set-based) and field selectors.

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Exists,
    NotExists,
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Gt(i64),
    Lt(i64),
}

#[derive(Debug, Clone, PartialEq)]
struct Requirement {
    key: String,
    op: Op,
}

/// A parsed `labelSelector`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector {
    reqs: Vec<Requirement>,
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')
}

struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
    src: &'a str,
}

impl<'a> Lexer<'a> {
    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && (self.s[self.pos] as char).is_whitespace() {
            self.pos += 1;
        }
    }
    fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.s.get(self.pos).map(|&b| b as char)
    }
    fn ident(&mut self) -> String {
        self.skip_ws();
        let start = self.pos;
        while self.pos < self.s.len() && is_key_char(self.s[self.pos] as char) {
            self.pos += 1;
        }
        self.src[start..self.pos].to_string()
    }
    fn eat(&mut self, t: &str) -> bool {
        self.skip_ws();
        if self.src[self.pos..].starts_with(t) {
            self.pos += t.len();
            true
        } else {
            false
        }
    }
}

fn err(sel: &str, why: &str) -> String {
    format!("unable to parse requirement: {why} in selector {sel:?}")
}

impl LabelSelector {
    pub fn parse(sel: &str) -> Result<Self, String> {
        let mut lx = Lexer {
            s: sel.as_bytes(),
            pos: 0,
            src: sel,
        };
        let mut reqs = Vec::new();
        if sel.trim().is_empty() {
            return Ok(Self { reqs });
        }
        loop {
            let negated = lx.eat("!");
            let key = lx.ident();
            if key.is_empty() {
                return Err(err(sel, "found '', expected: identifier"));
            }
            let op = if negated {
                Op::NotExists
            } else if lx.eat("==") || lx.eat("=") {
                Op::Eq(lx.ident())
            } else if lx.eat("!=") {
                Op::NotEq(lx.ident())
            } else if lx.eat(">") {
                let v = lx.ident();
                Op::Gt(
                    v.parse()
                        .map_err(|_| err(sel, &format!("invalid value {v:?} for '>'")))?,
                )
            } else if lx.eat("<") {
                let v = lx.ident();
                Op::Lt(
                    v.parse()
                        .map_err(|_| err(sel, &format!("invalid value {v:?} for '<'")))?,
                )
            } else {
                let save = lx.pos;
                let word = lx.ident();
                match word.as_str() {
                    "in" | "notin" => {
                        if !lx.eat("(") {
                            return Err(err(sel, "found '', expected: '('"));
                        }
                        let mut vals = Vec::new();
                        loop {
                            if lx.eat(")") {
                                break;
                            }
                            let v = lx.ident();
                            vals.push(v);
                            if lx.eat(",") {
                                continue;
                            }
                            if lx.eat(")") {
                                break;
                            }
                            return Err(err(sel, "found '', expected: ',' or ')'"));
                        }
                        if word == "in" {
                            Op::In(vals)
                        } else {
                            Op::NotIn(vals)
                        }
                    }
                    "" => {
                        lx.pos = save;
                        Op::Exists
                    }
                    other => {
                        return Err(err(
                            sel,
                            &format!("found '{other}', expected: in, notin, =, ==, !=, gt, lt"),
                        ))
                    }
                }
            };
            reqs.push(Requirement { key, op });
            match lx.peek() {
                None => break,
                Some(',') => {
                    lx.pos += 1;
                }
                Some(c) => {
                    return Err(err(
                        sel,
                        &format!("found '{c}', expected: ',' or 'end of string'"),
                    ))
                }
            }
        }
        Ok(Self { reqs })
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(|v| v.as_str());
        self.reqs.iter().all(|r| {
            let v = get(&r.key);
            match &r.op {
                Op::Exists => v.is_some(),
                Op::NotExists => v.is_none(),
                Op::Eq(x) => v == Some(x.as_str()),
                Op::NotEq(x) => v != Some(x.as_str()),
                Op::In(xs) => v.is_some_and(|v| xs.iter().any(|x| x == v)),
                Op::NotIn(xs) => v.is_none_or(|v| !xs.iter().any(|x| x == v)),
                Op::Gt(n) => v
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v > *n),
                Op::Lt(n) => v
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v < *n),
            }
        })
    }
}

/// A parsed `fieldSelector` (only `=`, `==`, `!=`).
#[derive(Debug, Clone, Default)]
pub struct FieldSelector {
    reqs: Vec<(String, bool, String)>,
}

fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.last_mut().expect("non-empty").push('\\');
                out.last_mut().expect("non-empty").push(n);
            }
        } else if c == sep {
            out.push(String::new());
        } else {
            out.last_mut().expect("non-empty").push(c);
        }
    }
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl FieldSelector {
    pub fn parse(sel: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in split_unescaped(sel, ',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (k, eq, v) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, true, v)
            } else {
                return Err(format!(
                    "invalid selector: '{sel}'; can't understand '{part}'"
                ));
            };
            reqs.push((k.trim().to_string(), eq, unescape(v.trim())));
        }
        Ok(Self { reqs })
    }

    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.reqs.iter().map(|(k, _, _)| k.as_str())
    }

    /// The value required for `metadata.name` by an equality requirement, if any.
    pub fn required_name(&self) -> Option<&str> {
        self.reqs
            .iter()
            .find(|(k, eq, _)| k == "metadata.name" && *eq)
            .map(|(_, _, v)| v.as_str())
    }

    pub fn matches(&self, get: impl Fn(&str) -> String) -> bool {
        self.reqs.iter().all(|(k, eq, v)| (get(k) == *v) == *eq)
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn label_selector_syntax() {
        let l = labels(json!({"owner": "helm", "name": "x", "tier": "web", "n": "7"}));
        let cases = [
            ("owner=helm,name=x", true),
            ("owner==helm", true),
            ("owner!=helm", false),
            ("missing!=a", true),
            ("tier in (web, db)", true),
            ("tier notin (web)", false),
            ("missing notin (web)", true),
            ("owner", true),
            ("!owner", false),
            ("!missing", true),
            ("n>5,n<8", true),
            ("", true),
        ];
        for (s, want) in cases {
            assert_eq!(
                LabelSelector::parse(s).unwrap().matches(Some(&l)),
                want,
                "{s}"
            );
        }
        assert!(LabelSelector::parse("a in (b").is_err());
        assert!(LabelSelector::parse("a b").is_err());
    }

    #[test]
    fn field_selector_syntax() {
        let f = FieldSelector::parse("metadata.name=a\\,b,metadata.namespace!=x").unwrap();
        assert_eq!(f.required_name(), Some("a,b"));
        assert!(f.matches(|k| if k == "metadata.name" {
            "a,b".into()
        } else {
            "y".into()
        }));
    }
}

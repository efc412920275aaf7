//! CEL `x-kubernetes-validations` of custom resources, evaluated with kube's CEL re-export
//! (`kube::core::cel`, the kube-cel crate). Rules that fail to compile are logged loudly, kept in a
//! report ([`cel_rule_report`]) and make every write of that resource fail closed, like an API
//! server that refuses such a CRD would never accept the object.

use std::borrow::Cow;
use std::sync::{Mutex, OnceLock};

use kube::core::cel::{compile_schema, CompiledSchema, ErrorKind, RootContext, Validator};
use serde_json::{json, Value};

use crate::kube::error::{FieldError, FieldErrorType};

/// One CEL rule found in a CRD schema and whether it is enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CelRuleReport {
    pub crd: String,
    pub version: String,
    /// Schema path of the node carrying the rule (`spec`, `spec.items[*]`, ...).
    pub path: String,
    pub rule: String,
    /// `None` when compiled and enforced, else why it is not.
    pub error: Option<String>,
}

fn report_store() -> &'static Mutex<Vec<CelRuleReport>> {
    static R: OnceLock<Mutex<Vec<CelRuleReport>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(Vec::new()))
}

/// Every CEL rule of every CRD registered in this process, with its compile status.
pub fn cel_rule_report() -> Vec<CelRuleReport> {
    report_store().lock().map(|r| r.clone()).unwrap_or_default()
}

pub struct CelRules {
    compiled: Mutex<CompiledSchema>,
    root: RootContext,
    /// The top-level fields whose schema carries a rule (`spec`, ...), or `None` when the root
    /// itself carries one: only these reach the evaluator, which converts every value it is
    /// given to CEL, rules or not.
    scope: Option<Vec<String>>,
    /// Whether a rule reads `oldSelf` (a transition rule), which ratcheting never skips.
    transition: bool,
    pub failed: Vec<CelRuleReport>,
}

impl std::fmt::Debug for CelRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CelRules")
            .field("failed", &self.failed)
            .finish()
    }
}

fn collect_rules(schema: &Value, path: &str, out: &mut Vec<(String, String)>) {
    if let Some(rules) = schema
        .get("x-kubernetes-validations")
        .and_then(|v| v.as_array())
    {
        for r in rules {
            if let Some(rule) = r.get("rule").and_then(|x| x.as_str()) {
                out.push((path.to_string(), rule.to_string()));
            }
        }
    }
    if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
        for (k, v) in props {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            collect_rules(v, &p, out);
        }
    }
    if let Some(items) = schema.get("items") {
        collect_rules(items, &format!("{path}[*]"), out);
    }
    if let Some(add) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        collect_rules(add, &format!("{path}[*]"), out);
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(arr) = schema.get(key).and_then(|a| a.as_array()) {
            for s in arr {
                collect_rules(s, path, out);
            }
        }
    }
}

fn compile_errors(c: &CompiledSchema, out: &mut Vec<(String, String)>) {
    for e in c.compilation_errors() {
        let rule = match e {
            kube::core::cel::CompilationError::Parse { rule, .. } => rule.clone(),
            kube::core::cel::CompilationError::MessageExpressionParse { rule, .. } => rule.clone(),
            _ => String::new(),
        };
        out.push((rule, e.to_string()));
    }
    for p in c.properties.values() {
        compile_errors(p, out);
    }
    if let Some(i) = &c.items {
        compile_errors(i, out);
    }
    if let Some(a) = &c.additional_properties {
        compile_errors(a, out);
    }
    for s in c
        .all_of
        .iter()
        .chain(c.any_of.iter())
        .chain(c.one_of.iter())
    {
        compile_errors(s, out);
    }
}

impl CelRules {
    /// Compiles the rules of one CRD version; `None` when the schema has none.
    pub fn compile(
        crd: &str,
        group: &str,
        version: &str,
        kind: &str,
        schema: &Value,
    ) -> Option<Self> {
        let mut rules = Vec::new();
        collect_rules(schema, "", &mut rules);
        if rules.is_empty() {
            return None;
        }
        let scope = rules
            .iter()
            .map(|(path, _)| top_field(path).map(str::to_owned))
            .collect::<Option<std::collections::BTreeSet<String>>>()
            .map(|fields| fields.into_iter().collect());
        let transition = rules.iter().any(|(_, rule)| rule.contains("oldSelf"));
        let compiled = compile_schema(schema);
        let mut errs = Vec::new();
        compile_errors(&compiled, &mut errs);
        let mut reports = Vec::new();
        for (path, rule) in rules {
            let error = errs
                .iter()
                .find(|(r, _)| *r == rule)
                .map(|(_, e)| e.clone())
                .or_else(|| {
                    reserved_selector(&rule).map(|w| {
                        format!("Syntax error: reserved identifier: {w} (a field named {w} is `__{w}__` in CEL)")
                    })
                });
            if let Some(e) = &error {
                tracing::error!(crd, version, path, rule, error = %e, "CEL rule failed to compile; writes of this resource are rejected");
                eprintln!("sandbox kube: CEL rule of {crd}/{version} at {path:?} failed to compile: {rule:?}: {e}");
            }
            reports.push(CelRuleReport {
                crd: crd.to_string(),
                version: version.to_string(),
                path,
                rule,
                error,
            });
        }
        if let Ok(mut store) = report_store().lock() {
            store.retain(|r| !(r.crd == crd && r.version == version));
            store.extend(reports.iter().cloned());
        }
        Some(CelRules {
            compiled: Mutex::new(compiled),
            root: RootContext {
                api_version: format!("{group}/{version}"),
                api_group: group.to_string(),
                kind: kind.to_string(),
            },
            scope,
            transition,
            failed: reports.into_iter().filter(|r| r.error.is_some()).collect(),
        })
    }

    /// Field errors for every failing rule (transition rules see `old`).
    ///
    /// An update that leaves every rule-carrying field as it was is not evaluated: the API
    /// server ratchets CEL rules (CRDValidationRatcheting, GA in 1.33), ignoring the errors of
    /// rules on unchanged values, so such an update is accepted whatever the rules say. Status
    /// and metadata writes are most writes of a custom resource.
    pub fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
        let (obj, old) = match &self.scope {
            None => (Cow::Borrowed(obj), old.map(Cow::Borrowed)),
            Some(fields) => {
                if !self.transition
                    && old.is_some_and(|o| fields.iter().all(|f| o.get(f) == obj.get(f)))
                {
                    return Vec::new();
                }
                (
                    Cow::Owned(within(obj, fields)),
                    old.map(|o| Cow::Owned(within(o, fields))),
                )
            }
        };
        let Ok(compiled) = self.compiled.lock() else {
            return Vec::new();
        };
        let validator = validator();
        let res = match validator.lock() {
            Ok(v) => {
                v.validate_compiled_with_context(&compiled, &obj, old.as_deref(), Some(&self.root))
            }
            Err(_) => Ok(()),
        };
        let Err(errs) = res else { return Vec::new() };
        errs.iter()
            .map(|e| {
                let path = e.field_path.trim_start_matches('.').to_string();
                let shown = value_type_at(&obj, &path);
                let msg = match e.kind {
                    ErrorKind::ValidationFailure => e.message.clone(),
                    _ => format!("{} (rule: {})", e.message, e.rule),
                };
                let kind = match e.reason.as_deref() {
                    Some("FieldValueForbidden") => FieldErrorType::Forbidden,
                    Some("FieldValueRequired") => FieldErrorType::Required,
                    Some("FieldValueDuplicate") => FieldErrorType::Duplicate,
                    _ => FieldErrorType::Invalid,
                };
                let value = if kind == FieldErrorType::Invalid {
                    Some(json!(shown))
                } else {
                    None
                };
                FieldError::new(kind, path, value, msg)
            })
            .collect()
    }
}

/// The top-level field a rule's schema path lies under (`spec` for `spec.secrets[*]`); `None`
/// for a rule on the root.
fn top_field(path: &str) -> Option<&str> {
    let end = path.find(['.', '[']).unwrap_or(path.len());
    Some(&path[..end]).filter(|f| !f.is_empty())
}

/// The object with only `fields` at the top.
fn within(obj: &Value, fields: &[String]) -> Value {
    Value::Object(
        fields
            .iter()
            .filter_map(|f| Some((f.clone(), obj.get(f)?.clone())))
            .collect(),
    )
}

/// CEL's reserved words. The apiserver fails to compile `self.namespace`: a field whose name is
/// reserved is exposed as `__namespace__`. The cel crate parses such selectors, so check here.
const CEL_RESERVED: [&str; 21] = [
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// The first reserved word used as a field selector (`x.namespace`), if any.
fn reserved_selector(rule: &str) -> Option<&'static str> {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    let re = RE
        .get_or_init(|| regex::Regex::new(r"\.\s*([A-Za-z_][A-Za-z0-9_]*)").expect("static regex"));
    re.captures_iter(rule)
        .filter_map(|c| c.get(1))
        .find_map(|m| CEL_RESERVED.iter().find(|w| **w == m.as_str()).copied())
}

fn validator() -> &'static Mutex<Validator> {
    static V: OnceLock<Mutex<Validator>> = OnceLock::new();
    V.get_or_init(|| Mutex::new(Validator::new()))
}

/// The apiserver reports CEL failures with the schema type name as the "value".
fn value_type_at(obj: &Value, path: &str) -> &'static str {
    let mut cur = Some(obj);
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (name, idx) = match part.find('[') {
            Some(i) => (
                &part[..i],
                part[i + 1..].trim_end_matches(']').parse::<usize>().ok(),
            ),
            None => (part, None),
        };
        cur = cur.and_then(|c| c.get(name));
        if let Some(i) = idx {
            cur = cur.and_then(|c| c.get(i));
        }
    }
    match cur {
        Some(Value::Object(_)) | None => "object",
        Some(Value::Array(_)) => "array",
        Some(Value::String(_)) => "string",
        Some(Value::Bool(_)) => "boolean",
        Some(Value::Number(n)) if n.is_f64() => "number",
        Some(Value::Number(_)) => "integer",
        Some(Value::Null) => "null",
    }
}

#[cfg(test)]
mod reserved_tests {
    use super::reserved_selector;

    #[test]
    fn reserved_words_as_selectors_are_found() {
        assert_eq!(reserved_selector("!has(self.namespace)"), Some("namespace"));
        assert_eq!(
            reserved_selector("self.spec.package == 'x'"),
            Some("package")
        );
        assert_eq!(reserved_selector("!has(self.__namespace__)"), None);
        assert_eq!(
            reserved_selector("self.name in ['a', 'b'] && self.x > 1.5"),
            None
        );
    }
}

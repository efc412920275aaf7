//! `metav1.Status` errors with the codes, reasons and message formats of a real API server.

use serde_json::{json, Value};

/// A failed API request, rendered as a `kind: Status` object.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    pub details: Option<Value>,
}

/// Group and plural resource name, as used in most error messages (`deployments.apps`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupResource {
    pub group: String,
    pub resource: String,
}

impl GroupResource {
    pub fn new(group: &str, resource: &str) -> Self {
        Self {
            group: group.to_string(),
            resource: resource.to_string(),
        }
    }
}

impl std::fmt::Display for GroupResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            write!(f, "{}", self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// Kind of a field-level validation error (Go's `field.ErrorType`).
#[derive(Debug, Clone, PartialEq)]
pub enum FieldErrorType {
    Required,
    Invalid,
    TypeInvalid,
    NotSupported(Vec<String>),
    Forbidden,
    TooLong(usize),
    TooMany(usize),
    Duplicate,
    NotFound,
}

/// One field-level validation error (Go's `field.Error`).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub kind: FieldErrorType,
    pub field: String,
    pub value: Option<Value>,
    pub detail: String,
}

const RAW_MARK: &str = "\u{0}raw:";

/// Renders a value the way `field.Error` does: strings quoted, scalars bare.
pub fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) if s.starts_with(RAW_MARK) => s[RAW_MARK.len()..].to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Null => "\"null\"".to_string(),
        other => other.to_string(),
    }
}

impl FieldError {
    pub fn new(
        kind: FieldErrorType,
        field: impl Into<String>,
        value: Option<Value>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            field: field.into(),
            value,
            detail: detail.into(),
        }
    }
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorType::Required, field, None, detail)
    }
    pub fn invalid(field: impl Into<String>, value: Value, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorType::Invalid, field, Some(value), detail)
    }
    /// A value Go prints bare (`0x0`), not quoted.
    pub fn invalid_raw(field: impl Into<String>, raw: &str, detail: impl Into<String>) -> Self {
        Self::new(
            FieldErrorType::Invalid,
            field,
            Some(Value::String(format!("{RAW_MARK}{raw}"))),
            detail,
        )
    }
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorType::Forbidden, field, None, detail)
    }

    pub fn reason(&self) -> &'static str {
        match self.kind {
            FieldErrorType::Required => "FieldValueRequired",
            FieldErrorType::Invalid => "FieldValueInvalid",
            FieldErrorType::TypeInvalid => "FieldValueTypeInvalid",
            FieldErrorType::NotSupported(_) => "FieldValueNotSupported",
            FieldErrorType::Forbidden => "FieldValueForbidden",
            FieldErrorType::TooLong(_) => "FieldValueTooLong",
            FieldErrorType::TooMany(_) => "FieldValueTooMany",
            FieldErrorType::Duplicate => "FieldValueDuplicate",
            FieldErrorType::NotFound => "FieldValueNotFound",
        }
    }

    /// `field.Error.ErrorBody()`.
    pub fn body(&self) -> String {
        let val = self
            .value
            .as_ref()
            .map(go_value)
            .unwrap_or_else(|| "\"null\"".into());
        let mut s = match &self.kind {
            FieldErrorType::Required => "Required value".to_string(),
            FieldErrorType::Forbidden => "Forbidden".to_string(),
            FieldErrorType::Invalid | FieldErrorType::TypeInvalid => {
                format!("Invalid value: {val}")
            }
            FieldErrorType::NotSupported(valid) => {
                let mut s = format!("Unsupported value: {val}");
                if !valid.is_empty() {
                    let q: Vec<String> = valid.iter().map(|v| format!("{v:?}")).collect();
                    s.push_str(&format!(": supported values: {}", q.join(", ")));
                }
                s
            }
            FieldErrorType::TooLong(n) => format!("Too long: may not be more than {n} bytes"),
            FieldErrorType::TooMany(n) => {
                let actual = self
                    .value
                    .as_ref()
                    .and_then(|v| v.as_array())
                    .map(|a| a.len())
                    .unwrap_or(0);
                format!("Too many: {actual}: must have at most {n} items")
            }
            FieldErrorType::Duplicate => format!("Duplicate value: {val}"),
            FieldErrorType::NotFound => format!("Not found: {val}"),
        };
        if !self.detail.is_empty() && !matches!(self.kind, FieldErrorType::NotSupported(_)) {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    pub fn message(&self) -> String {
        if self.field.is_empty() {
            self.body()
        } else {
            format!("{}: {}", self.field, self.body())
        }
    }
}

/// Go's `utilerrors.NewAggregate(...).Error()`: one message bare, several in brackets.
pub fn aggregate(msgs: &[String]) -> String {
    match msgs.len() {
        0 => String::new(),
        1 => msgs[0].clone(),
        _ => format!("[{}]", msgs.join(", ")),
    }
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.to_string(),
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "code": self.code,
        });
        if !self.reason.is_empty() {
            s["reason"] = json!(self.reason);
        }
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }

    fn gr_details(gr: &GroupResource, name: &str) -> Value {
        let mut d = json!({ "name": name, "kind": gr.resource });
        if !gr.group.is_empty() {
            d["group"] = json!(gr.group);
        }
        d
    }

    pub fn not_found(gr: &GroupResource, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{gr} {name:?} not found"))
            .with_details(Self::gr_details(gr, name))
    }

    pub fn already_exists(gr: &GroupResource, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{gr} {name:?} already exists"),
        )
        .with_details(Self::gr_details(gr, name))
    }

    pub fn conflict(gr: &GroupResource, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {gr} {name:?}: {why}"),
        )
        .with_details(Self::gr_details(gr, name))
    }

    pub fn stale(gr: &GroupResource, name: &str) -> Self {
        Self::conflict(
            gr,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// `errors.NewInvalid`: 422 listing every field error as a cause.
    pub fn invalid(kind: &str, group: &str, name: &str, errs: &[FieldError]) -> Self {
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let msgs: Vec<String> = errs.iter().map(|e| e.message()).collect();
        let message = if msgs.is_empty() {
            format!("{qualified} {name:?} is invalid")
        } else {
            format!("{qualified} {name:?} is invalid: {}", aggregate(&msgs))
        };
        let causes: Vec<Value> = errs
            .iter()
            .map(|e| json!({"reason": e.reason(), "message": e.body(), "field": e.field}))
            .collect();
        let mut details = json!({ "name": name, "kind": kind, "causes": causes });
        if !group.is_empty() {
            details["group"] = json!(group);
        }
        Self::new(422, "Invalid", message).with_details(details)
    }

    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", msg)
    }

    pub fn expired(msg: impl Into<String>) -> Self {
        Self::new(410, "Expired", msg)
    }

    pub fn gone(msg: impl Into<String>) -> Self {
        Self::new(410, "Gone", msg)
    }

    pub fn forbidden(gr: &GroupResource, name: &str, why: &str) -> Self {
        let msg = if name.is_empty() {
            format!("{gr} is forbidden: {why}")
        } else {
            format!("{gr} {name:?} is forbidden: {why}")
        };
        Self::new(403, "Forbidden", msg).with_details(Self::gr_details(gr, name))
    }

    pub fn method_not_allowed(msg: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", msg)
    }

    pub fn unsupported_media_type(content_type: &str, accepted: &[&str]) -> Self {
        let _ = content_type;
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                accepted.join(", ")
            ),
        )
    }

    pub fn not_acceptable(accepted: &[&str]) -> Self {
        Self::new(
            406,
            "NotAcceptable",
            format!(
                "only the following media types are accepted: {}",
                accepted.join(", ")
            ),
        )
    }

    pub fn internal(msg: impl Into<String>) -> Self {
        Self::new(500, "InternalError", msg)
    }

    /// A 404 for a URL that names no resource (`the server could not find the requested resource`).
    pub fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

pub type ApiResult<T> = Result<T, ApiError>;

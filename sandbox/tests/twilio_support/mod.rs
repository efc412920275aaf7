//! Shared helpers for the Twilio emulator tests: a tiny form-posting HTTP client.
#![allow(dead_code)]

use reqwest::Method;
use serde_json::Value;

pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Resp {
    pub fn code(&self) -> Option<u64> {
        self.body["code"].as_u64()
    }

    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(self.status, status, "unexpected response: {}", self.body);
        self
    }

    /// Asserts a Twilio error `{code, message, more_info, status}`.
    #[track_caller]
    pub fn expect_error(self, status: u16, code: u64) -> Self {
        assert_eq!(
            (self.status, self.code()),
            (status, Some(code)),
            "unexpected response: {}",
            self.body
        );
        assert_eq!(self.body["status"].as_u64(), Some(u64::from(status)));
        assert_eq!(
            self.body["more_info"].as_str(),
            Some(format!("https://www.twilio.com/docs/errors/{code}").as_str())
        );
        assert!(self.body["message"].is_string());
        self
    }
}

pub fn http() -> reqwest::Client {
    sandbox::kube::ensure_crypto_provider();
    reqwest::Client::builder()
        .user_agent("twilio-emu-tests/1")
        .build()
        .unwrap()
}

/// Sends `method` to `base + path` with optional basic auth and a form body (POST only).
pub async fn call(
    base: &str,
    method: &str,
    path: &str,
    auth: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> Resp {
    try_call(base, method, path, auth, form)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

pub async fn try_call(
    base: &str,
    method: &str,
    path: &str,
    auth: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> reqwest::Result<Resp> {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = http().request(method.clone(), format!("{base}{path}"));
    if let Some((u, p)) = auth {
        req = req.basic_auth(u, Some(p));
    }
    if method == Method::POST {
        req = req.form(form);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await?;
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Ok(Resp {
        status,
        body,
        headers,
    })
}

//! The HTTP client: request execution with timeouts, retries, tracing and the call observer.

use std::sync::Arc;
use std::time::Instant;

use serde::de::DeserializeOwned;
use tracing::Instrument;
use zeroize::Zeroize;

use super::config::{Product, TwilioConfig};
use super::endpoint::{Endpoint, HttpMethod};
use super::error::{ErrorKind, TransportFailure, TwilioError};
use super::limiter::AccountLimiter;
use super::observer::{CallObserver, CallOutcome, CallRecord};
use super::types::Credentials;

/// A Twilio REST client shared by the whole operator (cheap to clone). Credentials are passed
/// per call because every rotated account has its own.
#[derive(Clone)]
pub struct TwilioClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    config: TwilioConfig,
    /// Base URL per product, indexed like [`Product::ALL`].
    bases: [String; 3],
    observer: Option<Arc<dyn CallObserver>>,
    limiter: AccountLimiter,
}

impl std::fmt::Debug for TwilioClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioClient")
            .field("bases", &self.inner.bases)
            .field("observer", &self.inner.observer.is_some())
            .finish_non_exhaustive()
    }
}

/// One request, before retries.
pub(crate) struct Request<'a> {
    pub endpoint: Endpoint,
    pub creds: &'a Credentials,
    pub url: String,
    pub query: Vec<(&'static str, String)>,
    /// Sent as `application/x-www-form-urlencoded` (possibly empty) when set.
    pub form: Option<Vec<(&'static str, String)>>,
}

/// A response handed to an operation's decoder.
pub(crate) struct Reply<'a> {
    pub endpoint: Endpoint,
    pub url: &'a str,
    pub status: u16,
    pub body: &'a [u8],
    /// A DELETE got 404 after an earlier attempt may have deleted the resource.
    pub gone_after_retry: bool,
}

impl Reply<'_> {
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, TwilioError> {
        serde_json::from_slice(self.body).map_err(|e| TwilioError::Decode {
            endpoint: self.endpoint,
            url: self.url.to_owned(),
            status: self.status,
            detail: describe_json_error(&e),
        })
    }
}

/// serde_json messages can quote values ("invalid type: string \"…\""), so only messages that
/// name fields are kept; everything else is reduced to its category and position.
fn describe_json_error(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    if msg.starts_with("missing field") || msg.starts_with("secret field") {
        msg
    } else {
        format!(
            "{:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        )
    }
}

impl TwilioClient {
    pub fn new(config: TwilioConfig) -> Result<Self, TwilioError> {
        Self::build(config, None, AccountLimiter::default())
    }

    /// Like [`TwilioClient::new`], reporting every finished call to `observer`.
    pub fn with_observer(
        config: TwilioConfig,
        observer: Arc<dyn CallObserver>,
    ) -> Result<Self, TwilioError> {
        Self::build(config, Some(observer), AccountLimiter::default())
    }

    /// Like [`TwilioClient::with_observer`], with at most the limiter's requests in flight per
    /// account, counted together with every other client built with (a clone of) `limiter`.
    pub fn with_limiter(
        config: TwilioConfig,
        observer: Arc<dyn CallObserver>,
        limiter: AccountLimiter,
    ) -> Result<Self, TwilioError> {
        Self::build(config, Some(observer), limiter)
    }

    fn build(
        config: TwilioConfig,
        observer: Option<Arc<dyn CallObserver>>,
        limiter: AccountLimiter,
    ) -> Result<Self, TwilioError> {
        config.validate()?;
        crate::tls::install_crypto_provider();
        let bases = [
            config.base_url_for(Product::ALL[0])?,
            config.base_url_for(Product::ALL[1])?,
            config.base_url_for(Product::ALL[2])?,
        ];
        let region_only = config
            .region
            .as_deref()
            .is_some_and(|r| !r.trim().is_empty())
            && config.edge.as_deref().is_none_or(|e| e.trim().is_empty());
        if region_only && config.base_url.is_none() {
            tracing::warn!(
                region = config.region.as_deref().unwrap_or_default(),
                "Twilio region set without an edge: region-only hosts stopped accepting requests \
                 on 2026-04-28; set an edge as well"
            );
        }
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .user_agent(concat!("token-rotator/", env!("CARGO_PKG_VERSION")))
            // Twilio's helper libraries do not follow redirects; neither do we.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| TwilioError::Config(format!("cannot build HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                config,
                bases,
                observer,
                limiter,
            }),
        })
    }

    pub fn config(&self) -> &TwilioConfig {
        &self.inner.config
    }

    /// The base URL requests for `product` go to (no trailing slash).
    pub fn base_url(&self, product: Product) -> &str {
        let i = Product::ALL.iter().position(|p| *p == product).unwrap_or(0);
        &self.inner.bases[i]
    }

    pub(crate) fn url(&self, endpoint: Endpoint, path: &str) -> String {
        format!("{}{}", self.base_url(endpoint.product()), path)
    }

    /// Resolves a `next_page_uri` (relative) or `next_page_url` (absolute, naming Twilio's
    /// host) against this client's base URL for `product`: only path and query are taken, so
    /// credentials never go to a host other than the configured one.
    pub(crate) fn follow(&self, endpoint: Endpoint, next: &str) -> Result<String, TwilioError> {
        let path_and_query = if next.starts_with("http://") || next.starts_with("https://") {
            let u = url::Url::parse(next).map_err(|_| TwilioError::Decode {
                endpoint,
                url: self.base_url(endpoint.product()).to_owned(),
                status: 200,
                detail: "next page URL is not a URL".into(),
            })?;
            match u.query() {
                Some(q) => format!("{}?{}", u.path(), q),
                None => u.path().to_owned(),
            }
        } else if next.starts_with('/') {
            next.to_owned()
        } else {
            return Err(TwilioError::Decode {
                endpoint,
                url: self.base_url(endpoint.product()).to_owned(),
                status: 200,
                detail: "next page URI is neither absolute nor rooted".into(),
            });
        };
        Ok(self.url(endpoint, &path_and_query))
    }

    /// Runs `req` with retries and hands the final 2xx (or a DELETE's 404 after an ambiguous
    /// attempt) to `decode`.
    pub(crate) async fn execute<T>(
        &self,
        req: Request<'_>,
        decode: impl Fn(Reply<'_>) -> Result<T, TwilioError>,
    ) -> Result<T, TwilioError> {
        let endpoint = req.endpoint;
        let span = tracing::info_span!(
            "twilio_call",
            endpoint = endpoint.as_str(),
            method = endpoint.method().as_str(),
            url = %req.url,
            user = req.creds.username(),
            attempts = tracing::field::Empty,
            status = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        async {
            let started = Instant::now();
            let (result, attempts, status) = self.run_attempts(&req, &decode).await;
            let outcome = match &result {
                Ok(_) => CallOutcome::Success,
                Err(e) => CallOutcome::Failure(e.kind()),
            };
            let duration = started.elapsed();
            let span = tracing::Span::current();
            span.record("attempts", attempts);
            span.record("outcome", outcome.as_str());
            if let Some(s) = status {
                span.record("status", s);
            }
            match &result {
                Ok(_) => tracing::debug!(
                    attempts,
                    duration_ms = duration.as_millis() as u64,
                    "twilio call succeeded"
                ),
                Err(e) => tracing::debug!(
                    attempts,
                    duration_ms = duration.as_millis() as u64,
                    error_kind = e.kind().as_str(),
                    error = %e,
                    "twilio call failed"
                ),
            }
            if let Some(observer) = &self.inner.observer {
                observer.on_call(&CallRecord {
                    endpoint,
                    outcome,
                    attempts,
                    status,
                    duration,
                });
            }
            result
        }
        .instrument(span)
        .await
    }

    async fn run_attempts<T>(
        &self,
        req: &Request<'_>,
        decode: &impl Fn(Reply<'_>) -> Result<T, TwilioError>,
    ) -> (Result<T, TwilioError>, u32, Option<u16>) {
        let endpoint = req.endpoint;
        let policy = &self.inner.config.retry;
        let mut attempt = 0u32;
        let mut last_status = None;
        // Set once an attempt may have reached Twilio without us seeing the answer.
        let mut earlier_attempt_ambiguous = false;
        loop {
            attempt += 1;
            // A place under the account's concurrency limit for this attempt only: never held
            // through a backoff sleep.
            let place = self.inner.limiter.acquire(req.creds.account_sid()).await;
            let attempt_started = Instant::now();
            let sent = self.send_once(req).await;
            drop(place);
            let duration_ms = attempt_started.elapsed().as_millis() as u64;
            let failure = match sent {
                Ok((status, mut body)) => {
                    last_status = Some(status);
                    tracing::debug!(attempt, status, duration_ms, "twilio attempt answered");
                    let gone_after_retry = status == 404
                        && earlier_attempt_ambiguous
                        && endpoint.method() == HttpMethod::Delete;
                    if (200..300).contains(&status) || gone_after_retry {
                        let decoded = decode(Reply {
                            endpoint,
                            url: &req.url,
                            status,
                            body: &body,
                            gone_after_retry,
                        });
                        body.zeroize();
                        let result = match decoded {
                            // Applied for sure, result unknown: same recovery as a lost answer.
                            Err(e) if !endpoint.is_idempotent() => {
                                Err(TwilioError::OutcomeUnknown {
                                    endpoint,
                                    cause: Box::new(e),
                                })
                            }
                            other => other,
                        };
                        return (result, attempt, last_status);
                    }
                    let err = TwilioError::from_response(endpoint, &req.url, status, &body);
                    body.zeroize();
                    err
                }
                Err(e) if e.is_builder() => {
                    let err = TwilioError::Config(format!("cannot build request: {e}"));
                    return (Err(err), attempt, last_status);
                }
                Err(e) => {
                    let failure = classify_transport(&e);
                    tracing::debug!(attempt, duration_ms, failure = %failure, "twilio attempt failed");
                    TwilioError::Transport {
                        endpoint,
                        url: req.url.clone(),
                        failure,
                        source: e,
                    }
                }
            };

            let kind = failure.kind();
            // A response or lost exchange after which Twilio may have applied the request.
            let may_have_applied = match &failure {
                TwilioError::Transport { failure, .. } => *failure != TransportFailure::Connect,
                _ => kind == ErrorKind::Transient,
            };
            let retry = match kind {
                // Twilio never processes a 429.
                ErrorKind::RateLimited => true,
                ErrorKind::Transient => endpoint.is_idempotent() || !may_have_applied,
                _ => false,
            };
            if !retry || attempt >= policy.max_attempts {
                let err = if may_have_applied && !endpoint.is_idempotent() {
                    TwilioError::OutcomeUnknown {
                        endpoint,
                        cause: Box::new(failure),
                    }
                } else {
                    failure
                };
                return (Err(err), attempt, last_status);
            }
            earlier_attempt_ambiguous |= may_have_applied;
            let delay = policy.jittered_delay(attempt - 1);
            tracing::info!(
                attempt,
                error_kind = kind.as_str(),
                error = %failure,
                delay_ms = delay.as_millis() as u64,
                "retrying twilio call"
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn send_once(&self, req: &Request<'_>) -> Result<(u16, Vec<u8>), reqwest::Error> {
        let method = match req.endpoint.method() {
            HttpMethod::Get => reqwest::Method::GET,
            HttpMethod::Post => reqwest::Method::POST,
            HttpMethod::Delete => reqwest::Method::DELETE,
        };
        let mut builder = self
            .inner
            .http
            .request(method, &req.url)
            .basic_auth(req.creds.username(), Some(req.creds.password().expose()))
            .header(reqwest::header::ACCEPT, "application/json");
        if !req.query.is_empty() {
            builder = builder.query(&req.query);
        }
        if let Some(form) = &req.form {
            builder = builder.form(form);
        }
        let response = builder.send().await?;
        let status = response.status().as_u16();
        if let Some(id) = response
            .headers()
            .get("twilio-request-id")
            .and_then(|v| v.to_str().ok())
        {
            tracing::trace!(twilio_request_id = id, "twilio request id");
        }
        let body = response.bytes().await?;
        Ok((status, Vec::from(body)))
    }
}

fn classify_transport(e: &reqwest::Error) -> TransportFailure {
    // A connect error (a connect timeout included) means nothing reached Twilio.
    if e.is_connect() {
        TransportFailure::Connect
    } else if e.is_timeout() {
        TransportFailure::Timeout
    } else {
        TransportFailure::ConnectionLost
    }
}

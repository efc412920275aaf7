//! Helpers shared by the kube_* tests: raw HTTP against the sandbox API server and
//! kubectl/helm invocations with their own kubeconfig and cache directories.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub struct Raw {
    pub base: String,
    pub http: reqwest::Client,
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Raw {
    pub fn new(base: &str) -> Self {
        sandbox::kube::ensure_crypto_provider();
        Raw {
            base: base.to_string(),
            http: {
                sandbox::kube::ensure_crypto_provider();
                reqwest::Client::new()
            },
        }
    }

    /// For a server that speaks HTTPS (authentication on): trusts its CA.
    pub fn with_ca(base: &str, ca_pem: &str) -> Self {
        sandbox::kube::ensure_crypto_provider();
        let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap();
        Raw {
            base: base.to_string(),
            http: reqwest::Client::builder()
                .tls_certs_only([ca])
                .build()
                .unwrap(),
        }
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<String>,
    ) -> Resp {
        self.send_h(method, path, content_type, body, &[]).await
    }

    pub async fn send_h(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut rb = self.http.request(m, format!("{}{}", self.base, path));
        if let Some(ct) = content_type {
            rb = rb.header("content-type", ct);
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb.body(b);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send("GET", path, None, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(
            "POST",
            path,
            Some("application/json"),
            Some(body.to_string()),
        )
        .await
    }
    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.send(
            "PUT",
            path,
            Some("application/json"),
            Some(body.to_string()),
        )
        .await
    }
    pub async fn patch(&self, path: &str, ct: &str, body: &str) -> Resp {
        self.send("PATCH", path, Some(ct), Some(body.to_string()))
            .await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.send("DELETE", path, None, None).await
    }
}

/// Asserts a `kind: Status` failure with the given code and reason; returns the Status.
#[track_caller]
pub fn assert_status(r: &Resp, code: u16, reason: &str) -> Value {
    assert_eq!(r.status, code, "unexpected HTTP status, body: {}", r.text);
    assert_eq!(r.body["kind"], "Status", "body: {}", r.text);
    assert_eq!(r.body["code"], code, "body: {}", r.text);
    assert_eq!(r.body["reason"], reason, "body: {}", r.text);
    assert_eq!(r.body["status"], "Failure");
    r.body.clone()
}

/// A kubectl/helm environment: kubeconfig file plus private cache dirs.
pub struct Cli {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
}

pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Cli {
    pub fn new(kubeconfig_yaml: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sandbox-kube-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_yaml).unwrap();
        Cli { dir, kubeconfig }
    }

    fn command(&self, bin: &Path) -> Command {
        let mut c = Command::new(bin);
        c.env("KUBECONFIG", &self.kubeconfig)
            .env("KUBECACHEDIR", self.dir.join("kubecache"))
            .env("HOME", &self.dir)
            .env("HELM_CACHE_HOME", self.dir.join("helm-cache"))
            .env("HELM_CONFIG_HOME", self.dir.join("helm-config"))
            .env("HELM_DATA_HOME", self.dir.join("helm-data"))
            .current_dir(&self.dir);
        c
    }

    pub fn run(&self, bin: &Path, args: &[&str]) -> Out {
        let o = self.command(bin).args(args).output().unwrap();
        Out {
            ok: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    pub fn run_stdin(&self, bin: &Path, args: &[&str], stdin: &str) -> Out {
        use std::io::Write;
        let mut child = self
            .command(bin)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        Out {
            ok: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Runs and panics with the output on failure.
    #[track_caller]
    pub fn ok(&self, bin: &Path, args: &[&str]) -> String {
        let o = self.run(bin, args);
        assert!(
            o.ok,
            "{} {:?} failed:\nstdout: {}\nstderr: {}",
            bin.display(),
            args,
            o.stdout,
            o.stderr
        );
        o.stdout
    }

    pub fn write(&self, name: &str, content: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, content).unwrap();
        p.to_string_lossy().into_owned()
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub const WIDGET_CRD: &str = include_str!("../fixtures/kube-chart/crds/widgets.yaml");

pub fn yaml(s: &str) -> Value {
    serde_yaml::from_str(s).unwrap()
}

//! TLS set-up shared by the Kubernetes and Twilio clients.

/// Makes rustls' ring backend the process default (kube and reqwest both use it; ring keeps the
/// static musl build free of a C/CMake toolchain). Idempotent: a provider installed earlier (by
/// an embedding program or a test) is kept.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

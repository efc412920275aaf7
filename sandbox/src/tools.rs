//! Locations of the external tools that tests drive (kubectl, helm, the Python venv, Prism, checkov).
//!
//! `scripts/install-tools.sh` installs them into `$TOKEN_ROTATOR_TOOLS`, default
//! `<workspace root>/.cache/tools`. A missing tool is a test failure with a pointer to that script,
//! never a silent skip.

use std::path::{Path, PathBuf};

/// The install directory: `$TOKEN_ROTATOR_TOOLS` if set (and non-empty), else
/// `<workspace root>/.cache/tools`, the same default `scripts/install-tools.sh` uses.
pub fn tools_dir() -> PathBuf {
    match std::env::var_os("TOKEN_ROTATOR_TOOLS") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join(".cache").join("tools"),
    }
}

/// The workspace root: the sandbox crate lives one level below it.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("sandbox crate has a parent directory")
        .to_path_buf()
}

/// `kubectl` v1.35.
pub fn kubectl() -> PathBuf {
    require("kubectl", &["bin", "kubectl"])
}

/// `helm` v4.
pub fn helm() -> PathBuf {
    require("helm", &["bin", "helm"])
}

/// The Python interpreter of the venv that has `twilio`, `kubernetes` and `yaml` installed.
pub fn python() -> PathBuf {
    require("python", &["venv", "bin", "python"])
}

/// Stoplight Prism CLI (OpenAPI mock server / validation proxy).
pub fn prism() -> PathBuf {
    require("prism", &["node", "node_modules", ".bin", "prism"])
}

/// checkov, in its own venv because its dependency pins clash with the `kubernetes` client's.
pub fn checkov() -> PathBuf {
    require("checkov", &["checkov-venv", "bin", "checkov"])
}

fn require(tool: &str, rel: &[&str]) -> PathBuf {
    let path = rel.iter().fold(tools_dir(), |p, part| p.join(part));
    if !is_executable(&path) {
        panic!(
            "{tool} not found at {}: run scripts/install-tools.sh",
            path.display()
        );
    }
    path
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    // metadata() follows symlinks, so a venv's python symlink to a removed interpreter counts as missing.
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn run(program: &Path, args: &[&str]) -> String {
        let out = Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("failed to start {}: {e}", program.display()));
        assert!(
            out.status.success(),
            "{} {args:?} failed with {}: {}",
            program.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("tool output is UTF-8")
    }

    #[test]
    fn kubectl_is_v1_35() {
        let out = run(&kubectl(), &["version", "--client", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("kubectl prints JSON");
        let git_version = v["clientVersion"]["gitVersion"]
            .as_str()
            .expect("clientVersion.gitVersion is a string");
        assert!(
            git_version.starts_with("v1.35."),
            "kubectl is {git_version}"
        );
    }

    #[test]
    fn helm_is_v4() {
        let out = run(&helm(), &["version"]);
        assert!(out.contains("Version:\"v4."), "helm version said: {out}");
    }

    #[test]
    fn python_venv_has_clients() {
        let out = run(
            &python(),
            &[
                "-c",
                "import twilio, kubernetes, yaml; print(twilio.__version__)",
            ],
        );
        let major: u32 = out.trim().split('.').next().unwrap().parse().unwrap();
        assert_eq!(major, 9, "twilio version {out}");
    }

    #[test]
    fn prism_runs() {
        let out = run(&prism(), &["--version"]);
        assert!(out.trim().starts_with("5."), "prism --version said: {out}");
    }

    #[test]
    fn checkov_is_installed() {
        // Only presence here: starting checkov takes seconds; the chart scan test runs it for real.
        assert!(is_executable(&checkov()));
    }

    #[test]
    fn missing_tool_panics_with_install_hint() {
        let err = std::panic::catch_unwind(|| require("nothing", &["no", "such", "tool"]))
            .expect_err("a missing tool must panic");
        let msg = err
            .downcast_ref::<String>()
            .expect("panic message is a String");
        assert!(
            msg.starts_with("nothing not found at ")
                && msg.ends_with(": run scripts/install-tools.sh"),
            "{msg}"
        );
    }
}

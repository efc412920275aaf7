#!/usr/bin/env bash
# The one command that checks everything, on a fresh machine too: installs the test tools, then runs
# rustfmt, clippy, the CRD staleness check and the whole test suite. Exits non-zero if any step fails.
#
# After the tool install (whose failure stops everything) each step runs even when an earlier one
# failed, so a single run reports every problem; the failed steps are listed at the end.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

export TOKEN_ROTATOR_TOOLS="${TOKEN_ROTATOR_TOOLS:-$repo_root/.cache/tools}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"

section() { printf '\n========== %s ==========\n' "$*"; }

failed=()
step() { # name command...
    local name="$1"
    shift
    section "$name"
    if "$@"; then
        echo "---- $name: ok"
    else
        echo "---- $name: FAILED"
        failed+=("$name")
    fi
}

# The CRDs in crds/ must be exactly what the operator generates. Generation splits the multi-doc output
# of `token-rotator crd` into one file per CRD, <metadata.name>.yaml, each document verbatim
# (scripts/crds.py, shared with scripts/update-crds.sh); `diff -r` then also catches added or removed
# CRDs.
check_crds() {
    local tmp rc=0
    tmp="$(mktemp -d)"
    mkdir "$tmp/crds"
    if cargo run -q --bin token-rotator -- crd >"$tmp/all.yaml" &&
        "$TOKEN_ROTATOR_TOOLS/venv/bin/python" scripts/crds.py split "$tmp/crds" <"$tmp/all.yaml"; then
        if ! diff -ru crds "$tmp/crds"; then
            echo "crds/ is stale: run scripts/update-crds.sh and commit the result"
            rc=1
        fi
    else
        rc=1
    fi
    rm -rf "$tmp"
    return "$rc"
}

section "install test tools"
bash scripts/install-tools.sh

step "cargo fmt" cargo fmt --all -- --check
step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
step "CRDs up to date" check_crds
# Unit, integration and doc tests of both crates; --no-fail-fast so every failing test binary reports.
step "cargo test" cargo test --workspace --no-fail-fast
# The demo checks its own summary (a completed rotation, zero refused requests) and exits 1 otherwise.
step "demo rotation" cargo run -q --example demo
# The container image, built offline (static musl binary, assembled from scratch), checked
# reproducible and run hardened against the sandbox through a completed rotation.
step "container image" bash scripts/image.sh

section "summary"
if ((${#failed[@]})); then
    printf 'FAILED: %s\n' "${failed[@]}"
    exit 1
fi
echo "all checks passed"

#!/usr/bin/env bash
# Regenerates crds/ from the operator's CRD types: `token-rotator crd` prints every CRD as multi-doc
# YAML; scripts/crds.py writes each document verbatim to crds/<metadata.name>.yaml, and the same files
# go to charts/token-rotator/crds/. scripts/test.sh checks crds/ against the same generation, so run
# this after changing a CRD type.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

# crds.py needs PyYAML from the tools venv (fast no-op when already installed).
bash scripts/install-tools.sh >/dev/null
python="${TOKEN_ROTATOR_TOOLS:-$repo_root/.cache/tools}/venv/bin/python"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cargo run -q --bin token-rotator -- crd >"$tmp/all.yaml"
mkdir "$tmp/crds"
"$python" scripts/crds.py split "$tmp/crds" <"$tmp/all.yaml"

# Replace wholesale so a CRD that no longer exists loses its file too.
# The Helm chart ships the same files verbatim (tests/chart.rs compares them byte for byte).
for dir in crds charts/token-rotator/crds; do
    mkdir -p "$dir"
    rm -f "$dir"/*.yaml
    cp "$tmp"/crds/*.yaml "$dir"/
done
ls crds/

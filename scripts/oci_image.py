#!/usr/bin/env python3
"""Assembles the token-rotator container image from scratch, with no registry and no daemon.

The runtime image holds what distroless `static:nonroot` provides, and the binary: the static
binary at /token-rotator, passwd and group with nonroot (65532), the CA certificates, the
tzdata zone files, and /tmp. Every file gets the same owner and the SOURCE_DATE_EPOCH time
(default 0) and the gzip stream carries no timestamp, so the same binary always gives the same
image digest.

Usage: oci_image.py BINARY OUT_ARCHIVE [--tag TAG]
Writes an OCI image layout archive (what `podman load` and `skopeo ... oci-archive:` take) and
prints the manifest digest and the sizes.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
ZONEINFO = "/usr/share/zoneinfo"

PASSWD = (
    "root:x:0:0:root:/root:/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
    "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
)
GROUP = "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"


def entry(name, kind, mode, data=b"", uid=0, gid=0, link=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.uname = info.gname = ""
    info.mtime = EPOCH
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def rootfs_entries(binary):
    """(TarInfo, bytes) of every path in the image, parents first, sorted."""
    out = {}

    def add_dir(path, mode=0o755, uid=0, gid=0):
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i]) + "/"
            if p not in out:
                out[p] = entry(p, tarfile.DIRTYPE, 0o755)
        out[path.strip("/") + "/"] = entry(path.strip("/") + "/", tarfile.DIRTYPE, mode, uid=uid, gid=gid)

    def add_file(path, data, mode=0o644):
        p = path.strip("/")
        if os.path.dirname(p):
            add_dir(os.path.dirname(p))
        out[p] = entry(p, tarfile.REGTYPE, mode, data)

    with open(binary, "rb") as f:
        add_file("token-rotator", f.read(), 0o755)
    add_file("etc/passwd", PASSWD.encode())
    add_file("etc/group", GROUP.encode())
    with open(CA_BUNDLE, "rb") as f:
        add_file("etc/ssl/certs/ca-certificates.crt", f.read())
    add_dir("tmp", 0o1777)
    add_dir("home/nonroot", 0o700, uid=65532, gid=65532)
    for root, dirs, files in os.walk(ZONEINFO):
        dirs.sort()
        rel = os.path.relpath(root, "/")
        add_dir(rel)
        # os.walk lists links to directories with the directories and does not follow them.
        files = files + [d for d in dirs if os.path.islink(os.path.join(root, d))]
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
        for name in sorted(files):
            src = os.path.join(root, name)
            dst = os.path.join(rel, name)
            if os.path.islink(src):
                target = os.readlink(src)
                out[dst] = entry(dst, tarfile.SYMTYPE, 0o777, link=target)
            else:
                with open(src, "rb") as f:
                    add_file(dst, f.read())
    out.pop("./", None)
    return [out[k] for k in sorted(out)]


def tar_bytes(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
    return buf.getvalue()


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def json_bytes(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("out")
    ap.add_argument("--tag", default="token-rotator:dev")
    args = ap.parse_args()

    layer_tar = tar_bytes(rootfs_entries(args.binary))
    layer_gz = gzip.compress(layer_tar, compresslevel=9, mtime=0)
    created = "1970-01-01T00:00:00Z" if EPOCH == 0 else None
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": created or __import__("datetime").datetime.utcfromtimestamp(EPOCH).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": {
            "User": "65532:65532",
            "Entrypoint": ["/token-rotator"],
            "Cmd": ["run"],
            "WorkingDir": "/",
            "Env": [
                "PATH=/",
                "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
                "TZ=UTC",
            ],
            "ExposedPorts": {"8080/tcp": {}},
            "Labels": {
                "org.opencontainers.image.title": "token-rotator",
                "org.opencontainers.image.description": "Rotates Twilio credentials in Kubernetes Secrets with zero downtime",
                "org.opencontainers.image.licenses": "Apache-2.0",
            },
        },
        "rootfs": {"type": "layers", "diff_ids": [sha256(layer_tar)]},
        "history": [{"created_by": "scripts/oci_image.py", "created": created or ""}],
    }
    config_b = json_bytes(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256(config_b),
            "size": len(config_b),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": sha256(layer_gz),
                "size": len(layer_gz),
            }
        ],
    }
    manifest_b = json_bytes(manifest)
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": sha256(manifest_b),
                "size": len(manifest_b),
                "annotations": {"org.opencontainers.image.ref.name": args.tag},
            }
        ],
    }
    files = [
        ("oci-layout", json_bytes({"imageLayoutVersion": "1.0.0"})),
        ("index.json", json_bytes(index)),
    ]
    for blob in (layer_gz, config_b, manifest_b):
        files.append(("blobs/sha256/" + sha256(blob).split(":")[1], blob))
    archive = [entry("blobs/", tarfile.DIRTYPE, 0o755), entry("blobs/sha256/", tarfile.DIRTYPE, 0o755)]
    archive += [entry(name, tarfile.REGTYPE, 0o644, data) for name, data in files]
    archive.sort(key=lambda e: e[0].name)
    with open(args.out, "wb") as f:
        f.write(tar_bytes(archive))
    print(f"digest {sha256(manifest_b)}")
    print(f"layer {len(layer_gz)} bytes compressed, {len(layer_tar)} bytes uncompressed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Split the multi-document CRD YAML printed by `token-rotator crd` into one file per CRD.

Usage: crds.py split OUT_DIR < crds.yaml

Each document is written verbatim (no re-serialisation, so the files are exactly what the operator
prints) to OUT_DIR/<metadata.name>.yaml. Shared by scripts/update-crds.sh (which writes crds/) and
scripts/test.sh (which writes a temp dir and diffs it against crds/), so both apply the same rule.
Runs with the tools venv's Python, which has PyYAML.
"""

import os
import re
import sys

import yaml


def documents(text):
    # A document separator is a line that is exactly `---` (optionally followed by spaces).
    for chunk in re.split(r"^---[ \t]*$", text, flags=re.MULTILINE):
        body = chunk.strip("\n")
        if body.strip():
            yield body + "\n"


def split(out_dir):
    text = sys.stdin.read()
    names = set()
    for doc in documents(text):
        obj = yaml.safe_load(doc)
        if not isinstance(obj, dict) or obj.get("kind") != "CustomResourceDefinition":
            sys.exit(f"crds.py: a document is not a CustomResourceDefinition:\n{doc[:300]}")
        name = (obj.get("metadata") or {}).get("name")
        if not name or "/" in name:
            sys.exit(f"crds.py: CRD without a usable metadata.name: {name!r}")
        if name in names:
            sys.exit(f"crds.py: CRD {name} printed twice")
        names.add(name)
        with open(os.path.join(out_dir, name + ".yaml"), "w") as f:
            f.write(doc)
    if not names:
        sys.exit("crds.py: no CRD documents on stdin")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "split":
        sys.exit(__doc__)
    split(sys.argv[2])

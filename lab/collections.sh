#!/usr/bin/env bash
# Install the collections the lab and Molecule need into the venv without Galaxy
# (unreachable here): containers.podman (the podman connection plugin) is taken
# from the `ansible` community wheel on PyPI; only its directory is unpacked into
# the venv's site-packages, where ansible-core finds ansible_collections/*.
# molecule/requirements.yml lists the same collection for users with Galaxy access.
# Idempotent: does nothing when the pinned version is already installed.
set -euo pipefail
VENV=${1:-$(dirname "$0")/../.venv}
LOCK=$(cd "$(dirname "$0")/.." && pwd)/requirements/ansible-wheel.lock   # ansible 12.2.0, with hashes
WANT=1.18.0   # the containers.podman that wheel ships, for ansible-core 2.19

site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
manifest=$site/ansible_collections/containers/podman/MANIFEST.json
have=$("$VENV/bin/python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["collection_info"]["version"])' "$manifest" 2>/dev/null || true)
[ "$have" = "$WANT" ] && exit 0

echo "collections: installing containers.podman $WANT from the ansible wheel of $LOCK"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$VENV/bin/pip" download -q --disable-pip-version-check --no-deps --require-hashes -d "$tmp" -r "$LOCK"
rm -rf "$site/ansible_collections/containers/podman"
"$VENV/bin/python" - "$tmp"/ansible-*.whl "$site" <<'PY'
import sys
import zipfile

wheel, site = sys.argv[1], sys.argv[2]
prefix = 'ansible_collections/containers/podman/'
with zipfile.ZipFile(wheel) as z:
    z.extractall(site, [name for name in z.namelist() if name.startswith(prefix)])
PY

#!/usr/bin/env bash
# Build the node image localhost/clusternet-node:bookworm offline-style: debootstrap
# from the machine's own Debian mirror, then `podman import`. Reused when present.
# Progress (debootstrap's stage lines) goes to stderr so a slow build is visible.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$HERE/containers.conf}
IMAGE=${CLUSTERNET_IMAGE:-localhost/clusternet-node:bookworm}
# What the managed nodes and the traffic checks need: Debian's python3-pyroute2 (0.7.2)
# is the oldest pyroute2 the modules support; python3 also runs the whoami probe.
PACKAGES=python3,python3-pyroute2,iproute2,ipset,iptables,conntrack

if podman image exists "$IMAGE"; then
    echo "image $IMAGE present, reused"
    exit 0
fi

# The first deb822 URI serving bookworm on this machine (falls back to deb.debian.org).
mirror=$(awk '/^URIs:/ {u=$2} /^Suites:/ && / bookworm( |$)/ {print u; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}

root=$(mktemp -d /var/tmp/clusternet-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
start=$SECONDS
echo "building $IMAGE with debootstrap from $mirror (about a minute)..."
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$root" "$mirror" 2>&1 | awk '
    /^I: Retrieving / && !/Release|Packages/ { if (++n % 25 == 0) { printf "  [image] downloaded %d packages\n", n; fflush() } next }
    /^I: (Resolving dependencies of base|Checking component|Installing core|Unpacking required|Configuring required|Unpacking the base|Configuring the base|Base system)/ {
        sub(/^I: /, "  [image] "); print; fflush() }
    /^E: / { print; fflush() }' || true
[ -x "$root/usr/bin/python3" ] || { echo "debootstrap failed: no python3 in $root" >&2; exit 1; }
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
echo "  [image] importing the root filesystem into podman"
tar -C "$root" -c . | podman import --quiet - "$IMAGE" >/dev/null
echo "image $IMAGE built in $((SECONDS - start)) s"

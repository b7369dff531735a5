#!/usr/bin/env bash
# Build the node image localhost/clusternet-node:bookworm-systemd offline-style:
# debootstrap from the machine's own Debian mirror, then `podman import`. Reused when
# present. Nodes boot it with systemd as PID 1 (labnet.py), pods and the outside run
# the probe as their only process.
# Progress (debootstrap's stage lines) goes to stderr so a slow build is visible.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$HERE/containers.conf}
IMAGE=${CLUSTERNET_IMAGE:-localhost/clusternet-node:bookworm-systemd}
# What the managed nodes and the traffic checks need: Debian's python3-pyroute2 (0.7.2)
# is the oldest pyroute2 the modules support; python3 also runs the whoami probe.
# systemd boots a node, so clusternet-node.service restores its state at "boot"; the
# netfilter-persistent packages are there to prove the two restore side by side.
PACKAGES=python3,python3-pyroute2,iproute2,ipset,iptables,conntrack,systemd,systemd-sysv,netfilter-persistent,iptables-persistent,ipset-persistent

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
echo "building $IMAGE with debootstrap from $mirror (about four minutes)..."
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$root" "$mirror" 2>&1 | awk '
    /^I: Retrieving / && !/Release|Packages/ { if (++n % 25 == 0) { printf "  [image] downloaded %d packages\n", n; fflush() } next }
    /^I: (Resolving dependencies of base|Checking component|Installing core|Unpacking required|Configuring required|Unpacking the base|Configuring the base|Base system)/ {
        sub(/^I: /, "  [image] "); print; fflush() }
    /^E: / { print; fflush() }' || true
[ -x "$root/usr/bin/python3" ] || { echo "debootstrap failed: no python3 in $root" >&2; exit 1; }
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
# iptables-persistent's postinst saves the rules of the namespace it ran in (the build
# host's): a node starts with none.
: > "$root/etc/iptables/rules.v4"; : > "$root/etc/iptables/rules.v6"; : > "$root/etc/iptables/ipsets"
# A container's hostname is its name (podman --hostname), not the build host's.
rm -f "$root/etc/hostname"
# A booted node runs the lab's probe (mounted by labnet.py) as a service.
cat > "$root/etc/systemd/system/clusternet-lab-whoami.service" <<'UNIT'
[Unit]
Description=clusternet lab probe (lab/whoami.py)

[Service]
ExecStart=/usr/bin/python3 /usr/local/lib/clusternet/whoami.py serve
Restart=always

[Install]
WantedBy=multi-user.target
UNIT
ln -s ../clusternet-lab-whoami.service "$root/etc/systemd/system/multi-user.target.wants/clusternet-lab-whoami.service"
echo "  [image] importing the root filesystem into podman"
tar -C "$root" -c . | podman import --quiet - "$IMAGE" >/dev/null
echo "image $IMAGE built in $((SECONDS - start)) s"

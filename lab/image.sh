#!/usr/bin/env bash
# Build the node image localhost/clusternet-node:RELEASE-systemd offline-style, for each
# Debian RELEASE given (default: $CLUSTERNET_NODE_RELEASE, else bookworm; trixie is the
# other one the collection supports): debootstrap from the machine's own Debian mirror,
# then `podman import`. Reused when present. Nodes boot it with systemd as PID 1
# (labnet.py), pods and the outside run the probe as their only process.
# Progress (debootstrap's stage lines) goes to stderr so a slow build is visible.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$HERE/containers.conf}
# What the managed nodes and the traffic checks need: bookworm's python3-pyroute2 0.7.2
# (Python 3.11) is the oldest pyroute2 the modules support; trixie brings 0.7.7 on Python
# 3.13, the newest Python a node runs; python3 also runs the whoami probe. iptables brings
# both backends (nft, legacy); nftables brings nft, for the NAT backend nftables
# (CLUSTERNET_NAT_BACKEND=nftables).
# systemd boots a node, so clusternet-node.service restores its state at "boot"; the
# netfilter-persistent packages are there to prove the two restore side by side.
PACKAGES=python3,python3-pyroute2,iproute2,ipset,iptables,nftables,conntrack,systemd,systemd-sysv,netfilter-persistent,iptables-persistent,ipset-persistent
WHOAMI_UNIT='[Unit]
Description=clusternet lab probe (lab/whoami.py)

[Service]
ExecStart=/usr/bin/python3 /usr/local/lib/clusternet/whoami.py serve
Restart=always

[Install]
WantedBy=multi-user.target'

# The first deb822 URI serving bookworm on this machine (falls back to deb.debian.org);
# the same mirror serves trixie.
mirror=$(awk '/^URIs:/ {u=$2} /^Suites:/ && / bookworm( |$)/ {print u; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
roots=()
trap 'rm -rf "${roots[@]}"' EXIT

build() {
    local release=$1 image=localhost/clusternet-node:$1-systemd root start=$SECONDS
    # An image is reused only when built from this package list (its label): one built
    # before a package was added lacks it.
    if podman image exists "$image"; then
        if [ "$(podman image inspect --format '{{index .Labels "clusternet.packages"}}' "$image")" = "$PACKAGES" ]; then
            echo "image $image present, reused"
            return 0
        fi
        podman rmi "$image" >/dev/null || { echo "image.sh: $image predates the package list and is in use: make lab-down first" >&2; exit 1; }
    fi
    root=$(mktemp -d /var/tmp/clusternet-rootfs.XXXXXX)
    roots+=("$root")
    echo "building $image with debootstrap from $mirror (about four minutes)..."
    debootstrap --variant=minbase --include="$PACKAGES" "$release" "$root" "$mirror" 2>&1 | awk -v release="$release" '
        /^I: Retrieving / && !/Release|Packages/ { if (++n % 25 == 0) { printf "  [%s] downloaded %d packages\n", release, n; fflush() } next }
        /^I: (Resolving dependencies of base|Checking component|Installing core|Unpacking required|Configuring required|Unpacking the base|Configuring the base|Base system)/ {
            sub(/^I: /, "  [" release "] "); print; fflush() }
        /^E: / { print; fflush() }' || true
    [ -x "$root/usr/bin/python3" ] || { echo "debootstrap $release failed: no python3 in $root" >&2; exit 1; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    # iptables-persistent's postinst saves the rules of the namespace it ran in (the build
    # host's): a node starts with none.
    : > "$root/etc/iptables/rules.v4"; : > "$root/etc/iptables/rules.v6"; : > "$root/etc/iptables/ipsets"
    # A container's hostname is its name (podman --hostname), not the build host's.
    rm -f "$root/etc/hostname"
    # A booted node runs the lab's probe (mounted by labnet.py) as a service.
    printf '%s\n' "$WHOAMI_UNIT" > "$root/etc/systemd/system/clusternet-lab-whoami.service"
    ln -s ../clusternet-lab-whoami.service "$root/etc/systemd/system/multi-user.target.wants/clusternet-lab-whoami.service"
    echo "  [$release] importing the root filesystem into podman"
    tar -C "$root" -c . | podman import --quiet --change "LABEL clusternet.packages=$PACKAGES" - "$image" >/dev/null
    echo "image $image built in $((SECONDS - start)) s"
}

for release in "${@:-${CLUSTERNET_NODE_RELEASE:-bookworm}}"; do
    case $release in
        bookworm | trixie) build "$release" ;;
        *) echo "image.sh: release $release: expected bookworm or trixie" >&2; exit 2 ;;
    esac
done

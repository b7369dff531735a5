#!/usr/bin/env bash
# make lab / make lab-down.
#   up:   node image (built once; CLUSTERNET_NODE_RELEASE=trixie for Debian 13 nodes),
#         the lab's containers and network from
#         inventories/lab, playbooks/site.yml, then lab/check.py's summary,
#         traffic checks and verdict (exit 1 when a check fails).
#         Then the floating-IP gateway reboots with no playbook run (lab/reboot.py):
#         its host state must come back from clusternet-node.service alone, and the
#         checks run again; then the same node is tampered with (lab/tamper.py) and
#         its reconcile timer must journal, count and repair the drift within its
#         interval (the lab's is 10 s); the verdict covers all three.
#         CLUSTERNET_NAT_BACKEND=nftables converges every node with
#         clusternet_nat_backend=nftables (tables ip/ip6 clusternet) and checks those;
#         the backend does not remove the other's rules: lab-down between the two.
#   reboot NODE: restart NODE's container (fresh netns, systemd boot), wire its eth0
#         again, compare its host state before and after (lab/reboot.py).
#   tamper NODE: flush NODE's masquerade chain, delete a VIP route, remove a set entry,
#         flap kube-dummy-if; wait for its reconcile, then the checks (lab/check.py --tamper).
#   check: lab/check.py's summary and traffic checks, without converging.
#   down: every container and the switch netns of the lab, and the node image.
# Nothing here touches the root network namespace: see lab/labnet.py.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
INVENTORY=inventories/lab
PREFIX=$(sed -n 's/^ *prefix: *\([A-Za-z0-9_.-]*\).*/\1/p' "$INVENTORY/hosts.yml" | head -n1)
IMAGES=(localhost/clusternet-node:bookworm-systemd localhost/clusternet-node:trixie-systemd)
export CONTAINERS_CONF=$REPO/lab/containers.conf
export ANSIBLE_COLLECTIONS_PATH=$REPO/build/collections
export ANSIBLE_RETRY_FILES_ENABLED=False ANSIBLE_DISPLAY_SKIPPED_HOSTS=False ANSIBLE_LOCALHOST_WARNING=False
export ANSIBLE_FORCE_COLOR=${ANSIBLE_FORCE_COLOR:-$([ -t 1 ] && echo 1 || echo 0)}
VENV=$REPO/.venv
NAT_BACKEND=${CLUSTERNET_NAT_BACKEND:-}
case $NAT_BACKEND in
    '' | iptables | nftables) ;;
    *) echo "lab.sh: CLUSTERNET_NAT_BACKEND=$NAT_BACKEND: expected iptables or nftables" >&2; exit 2 ;;
esac
# The converge's extra vars and check.py's options for it (empty: the inventory's backend).
BACKEND_VARS=(${NAT_BACKEND:+-e clusternet_nat_backend=$NAT_BACKEND})
BACKEND_CHECK=(${NAT_BACKEND:+--nat-backend $NAT_BACKEND})
STATE=$REPO/lab/.state  # what the last converge saw (gitignored)

step() { printf '\n== %s ==\n' "$*"; }

up() {
    bash lab/collections.sh "$VENV"
    # The playbooks name roles as clusternet.node.*: link the checkout as that collection.
    mkdir -p build/collections/ansible_collections/clusternet
    ln -sfn "$REPO" build/collections/ansible_collections/clusternet/node

    step "node image (${CLUSTERNET_NODE_RELEASE:-bookworm})"
    bash lab/image.sh

    step "lab containers and network ($PREFIX)"
    "$VENV/bin/ansible-playbook" -i "$INVENTORY" lab/create.yml

    # The same intent on the same node containers as the last converge: nothing may change.
    local key expect=() log
    key=$( (echo "$NAT_BACKEND"; cat "$INVENTORY"/hosts.yml "$INVENTORY"/group_vars/*/*; podman ps -q --no-trunc --filter "label=clusternet.lab=$PREFIX" | sort) | sha256sum)
    if [ "$key" = "$(cat "$STATE/converged" 2>/dev/null)" ]; then
        expect=(--expect-unchanged)
    fi

    step "converge playbooks/site.yml${NAT_BACKEND:+ (NAT backend $NAT_BACKEND)}"
    log=$(mktemp)
    trap 'rm -f "$log"' RETURN
    if "$VENV/bin/ansible-playbook" -i "$INVENTORY" "${BACKEND_VARS[@]}" playbooks/site.yml | tee "$log"; then
        mkdir -p "$STATE" && echo "$key" > "$STATE/converged"
    fi

    local gateway
    gateway=$("$VENV/bin/python" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["clusternet_cluster"]["floating_ips"][0]["gateway"])' \
        "$INVENTORY/group_vars/all/cluster.yml")
    ANSIBLE_FORCE_COLOR=0 "$VENV/bin/python" lab/check.py "$INVENTORY" "$log" "${expect[@]}" "${BACKEND_CHECK[@]}" --reboot "$gateway" --tamper "$gateway"
}

down() {
    python3 lab/labnet.py down "$PREFIX"
    rm -rf "$STATE"
    local image
    for image in "${IMAGES[@]}"; do
        if podman image exists "$image"; then
            podman rmi "$image" >/dev/null 2>&1 && echo "removed image $image" \
                || echo "kept image $image: containers outside the lab (Molecule?) still use it"
        fi
    done
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    reboot) [ -n "${2:-}" ] || { echo "usage: $0 reboot NODE" >&2; exit 2; }
        "$VENV/bin/python" lab/reboot.py "$INVENTORY" "$2" ;;
    tamper) [ -n "${2:-}" ] || { echo "usage: $0 tamper NODE" >&2; exit 2; }
        ANSIBLE_FORCE_COLOR=0 "$VENV/bin/python" lab/check.py "$INVENTORY" "${BACKEND_CHECK[@]}" --tamper "$2" ;;
    check) ANSIBLE_FORCE_COLOR=0 "$VENV/bin/python" lab/check.py "$INVENTORY" "${BACKEND_CHECK[@]}" ;;
    *) echo "usage: $0 up|down|reboot NODE|tamper NODE|check" >&2; exit 2 ;;
esac

# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render the cluster intent (clusternet_cluster) into one node's host state.

Pure Python: the intent is validated for meaning (families, membership, duplicates)
and turned into the arguments of the four modules, so roles stay free of long Jinja.
Documentation lives in node_state.yml next to this file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible.errors import AnsibleFilterError
from ansible_collections.clusternet.node.plugins.module_utils.families import (
    FAMILIES,
    family_of_version,
    find_duplicate,
    one_per_family,
    parse_address,
    parse_network,
)

# (suffix, ipset type) of every set a node gets, in the order they are applied.
SETS = (
    ('pod-subnets', 'hash:net'),
    ('node-ips', 'hash:ip'),
    ('svip', 'hash:ip'),
    ('svip-prt', 'hash:ip,port'),
    ('local-pods', 'hash:ip'),
)
IPV6_SET_PREFIX = 'inet6:'
MAX_SET_NAME = 31  # IPSET_MAXNAMELEN - 1; the IPv6 name is the longer one
SET_NAME_CHARS = re.compile(r'^[A-Za-z0-9_.:-]+$')
PROTOCOLS = ('tcp', 'udp', 'sctp')


def _items(value, what):
    """A YAML list, or an error naming what it should have been."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise ValueError('%s must be a list, got %r' % (what, value))
    return list(value)


def _mapping(value, what):
    if not isinstance(value, dict):
        raise ValueError('%s must be a mapping, got %r' % (what, value))
    return value


def _unique(values, what):
    dup = find_duplicate(values)
    if dup is not None:
        raise ValueError('%s lists %s twice' % (what, dup))
    return values


def _claim(owners, value, owner, what):
    """Record that owner uses value; a value used by two owners is an error naming both."""
    if value in owners:
        raise ValueError('%s %s is used by both %s and %s' % (what, value, owners[value], owner))
    owners[value] = owner


def _in_families(values, families, what):
    for value in values:
        if family_of_version(value.version) not in families:
            raise ValueError('%s %s is %s but cluster_cidrs has no %s CIDR' % (
                what, value, family_of_version(value.version), family_of_version(value.version)))
    return values


def _per_cluster_family(values, families, what):
    """One value per family of the cluster, none missing: family -> value."""
    by_family = one_per_family(_in_families(values, families, what), what)
    for family in families:
        if family not in by_family:
            raise ValueError('%s has no %s value but cluster_cidrs has an %s CIDR' % (what, family, family))
    return by_family


def set_names(prefix):
    """The managed set names for a prefix; each IPv6 name must fit the kernel's limit."""
    names = [str(prefix) + suffix for suffix, dummy in SETS]
    for name in names:
        if not SET_NAME_CHARS.match(name) or len(IPV6_SET_PREFIX + name) > MAX_SET_NAME:
            raise ValueError('ipset prefix %r gives set name %r: names may use letters, digits and _.:- and %s%s must be at most %d characters'
                             % (prefix, name, IPV6_SET_PREFIX, name, MAX_SET_NAME))
    return names


def _parse_nodes(nodes, cluster_nets, families):
    """node name -> {'node_ips': {family: addr}, 'pod_cidrs': {family: net}}."""
    out = {}
    node_ip_owner, pod_cidrs = {}, []
    for name, node in _mapping(nodes, 'nodes').items():
        name = str(name)
        what = 'node %s' % name
        node = _mapping(node, what)
        ips = [parse_address(v, '%s node_ips entry' % what) for v in _items(node.get('node_ips'), '%s node_ips' % what)]
        cidrs = [parse_network(v, '%s pod_cidrs entry' % what) for v in _items(node.get('pod_cidrs'), '%s pod_cidrs' % what)]
        parsed = {
            'node_ips': _per_cluster_family(ips, families, '%s node_ips' % what),
            'pod_cidrs': _per_cluster_family(cidrs, families, '%s pod_cidrs' % what),
        }
        for ip in ips:
            _claim(node_ip_owner, ip, what, 'node IP')
        for cidr in cidrs:
            if not any(cidr.version == net.version and cidr.subnet_of(net) for net in cluster_nets):
                raise ValueError('%s pod CIDR %s is not inside any cluster CIDR' % (what, cidr))
            pod_cidrs.append((cidr, what))
        out[name] = parsed
    if not out:
        raise ValueError('nodes is empty: the cluster needs at least one node')
    overlap = _first_overlap(pod_cidrs)
    if overlap:
        (wide, wide_owner), (cidr, owner) = overlap
        raise ValueError('%s pod CIDR %s overlaps %s pod CIDR %s' % (owner, cidr, wide_owner, wide))
    return out


def _first_overlap(owned):
    """owned: [(network, owner)]. Two that overlap, or None; n log n, as clusters have thousands of nodes.

    In start-address order a network overlaps an earlier one exactly when it starts at or
    before the end of the one just before it, as long as none overlapped before.
    """
    previous = None
    for item in sorted(owned, key=lambda item: (item[0].version, item[0].network_address)):
        # No overlap so far: the networks seen are disjoint, so the previous one ends furthest.
        if previous and previous[0].version == item[0].version and item[0].network_address <= previous[0].broadcast_address:
            return previous, item
        previous = item
    return None


def _parse_services(services, service_nets, families):
    """A list of {'ips': [cluster then external addresses], 'ports': [(proto, port)]}."""
    out = []
    cluster_ip_owner, names = {}, {}
    for index, service in enumerate(_items(services, 'services')):
        service = _mapping(service, 'services[%d]' % index)
        what = 'service %s/%s' % (service.get('namespace', 'default'), service.get('name', '#%d' % index))
        _claim(names, what, 'services[%d]' % index, 'name')
        cluster_ips = [parse_address(v, '%s cluster_ips entry' % what) for v in _items(service.get('cluster_ips'), '%s cluster_ips' % what)]
        if not cluster_ips:
            raise ValueError('%s has no cluster_ips' % what)
        one_per_family(_in_families(cluster_ips, families, '%s cluster_ips' % what), '%s cluster IP' % what)
        for ip in cluster_ips:
            if not any(ip in net for net in service_nets):
                raise ValueError('%s cluster IP %s is not inside any service CIDR' % (what, ip))
            _claim(cluster_ip_owner, ip, what, 'cluster IP')
        external_ips = [parse_address(v, '%s external_ips entry' % what) for v in _items(service.get('external_ips'), '%s external_ips' % what)]
        ips = _unique(cluster_ips + _in_families(external_ips, families, '%s external_ips' % what), '%s cluster_ips and external_ips' % what)
        out.append({'what': what, 'ips': ips, 'ports': _parse_ports(service.get('ports'), what)})
    return out


def _parse_ports(ports, what):
    out = []
    for index, port in enumerate(_items(ports, '%s ports' % what)):
        port = _mapping(port, '%s ports[%d]' % (what, index))
        protocol = str(port.get('protocol', 'tcp')).lower()
        if protocol not in PROTOCOLS:
            raise ValueError('%s port protocol %r: expected one of %s' % (what, port.get('protocol'), ', '.join(PROTOCOLS)))
        try:
            number = int(port.get('port'))
        except (TypeError, ValueError):
            number = 0
        if not 0 < number < 65536:
            raise ValueError('%s port %r: expected a number from 1 to 65535' % (what, port.get('port')))
        out.append((protocol, number))
    return _unique(out, '%s ports' % what)


def _parse_pods(pods, nodes):
    """node name -> [pod IPs]; every pod IP lies in its node's pod CIDR of that family."""
    out = dict((name, []) for name in nodes)
    pod_ip_owner, names = {}, {}
    for index, pod in enumerate(_items(pods, 'pods')):
        pod = _mapping(pod, 'pods[%d]' % index)
        what = 'pod %s/%s' % (pod.get('namespace', 'default'), pod.get('name', '#%d' % index))
        _claim(names, what, 'pods[%d]' % index, 'name')
        node = str(pod.get('node'))
        if node not in nodes:
            raise ValueError('%s is on node %s, which is not in nodes' % (what, node))
        ips = [parse_address(v, '%s ips entry' % what) for v in _items(pod.get('ips'), '%s ips' % what)]
        one_per_family(ips, '%s IP' % what)
        for ip in ips:
            cidr = nodes[node]['pod_cidrs'].get(family_of_version(ip.version))
            if cidr is None or ip not in cidr:
                raise ValueError('%s IP %s is not inside node %s pod CIDR %s' % (what, ip, node, cidr))
            _claim(pod_ip_owner, ip, what, 'pod IP')
        out[node].extend(ips)
    return out


def _parse_floating_ips(floating_ips, nodes, families):
    """node name -> [{'external_ip', 'internal_ip'}] for the FIPs that node is gateway of."""
    out = dict((name, []) for name in nodes)
    external_owner, internal_owner = {}, {}
    for index, fip in enumerate(_items(floating_ips, 'floating_ips')):
        fip = _mapping(fip, 'floating_ips[%d]' % index)
        what = 'floating IP %s' % fip.get('external_ip')
        external = parse_address(fip.get('external_ip'), 'floating_ips[%d] external_ip' % index)
        internal = parse_address(fip.get('internal_ip'), '%s internal_ip' % what)
        _in_families([external], families, what)
        if external.version != internal.version:
            raise ValueError('%s maps to %s: both must be of one family' % (what, internal))
        _claim(external_owner, external, 'floating_ips[%d]' % index, 'floating IP')
        _claim(internal_owner, internal, what, 'internal IP')
        gateway = str(fip.get('gateway'))
        if gateway not in nodes:
            raise ValueError('%s has gateway %s, which is not in nodes' % (what, gateway))
        out[gateway].append({'external_ip': str(external), 'internal_ip': str(internal)})
    return out


def _ordered(values):
    """Text of each value once, first occurrence first."""
    out, seen = [], set()
    for value in values:
        text = str(value)
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def render(cluster, node, prefix, masquerade_families=FAMILIES):
    """Validate the whole intent and return the module arguments for node.

    masquerade_families: the families whose pod traffic is masqueraded (flannel #1906);
    the others get no masquerade rules at all.

    Keys: ipset (a list of set arguments), vip, masquerade, fip.
    Raises ValueError naming the first offending value.
    """
    cluster = _mapping(cluster, 'clusternet_cluster')
    cluster_nets = _unique([parse_network(v, 'cluster_cidrs entry') for v in _items(cluster.get('cluster_cidrs'), 'cluster_cidrs')], 'cluster_cidrs')
    if not cluster_nets:
        raise ValueError('cluster_cidrs is empty: the cluster needs a pod network')
    families = [family for family in FAMILIES if any(family_of_version(net.version) == family for net in cluster_nets)]
    service_nets = _in_families(
        _unique([parse_network(v, 'service_cidrs entry') for v in _items(cluster.get('service_cidrs'), 'service_cidrs')], 'service_cidrs'),
        families, 'service CIDR')
    nodes = _parse_nodes(cluster.get('nodes'), cluster_nets, families)
    node = str(node)
    if node not in nodes:
        raise ValueError('node %s is not in nodes (%s)' % (node, ', '.join(nodes)))
    services = _parse_services(cluster.get('services'), service_nets, families)
    local_pods = _parse_pods(cluster.get('pods'), nodes)[node]
    gateway_of = _parse_floating_ips(cluster.get('floating_ips'), nodes, families)[node]

    service_ips = _ordered(ip for service in services for ip in service['ips'])
    ip_ports, port_owner = [], {}
    for service in services:
        for ip in service['ips']:
            for protocol, port in service['ports']:
                entry = '%s,%s:%d' % (ip, protocol, port)
                _claim(port_owner, entry, service['what'], 'service IP and port')
                ip_ports.append(entry)
    this = nodes[node]
    entries = {
        'pod-subnets': _ordered(spec['pod_cidrs'][f] for spec in nodes.values() for f in families),
        'node-ips': _ordered(spec['node_ips'][f] for spec in nodes.values() for f in families),
        'svip': service_ips,
        'svip-prt': ip_ports,
        'local-pods': _ordered(local_pods),
    }
    return {
        'ipset': [{'name': name, 'set_type': set_type, 'families': list(families), 'entries': entries[suffix]}
                  for name, (suffix, set_type) in zip(set_names(prefix), SETS)],
        'vip': {'addresses': list(service_ips), 'node_ips': [str(this['node_ips'][f]) for f in families]},
        'masquerade': {'cluster_cidrs': _ordered(net for net in cluster_nets if family_of_version(net.version) in masquerade_families),
                       'pod_cidrs': [str(this['pod_cidrs'][f]) for f in families if f in masquerade_families]},
        'fip': {'floating_ips': gateway_of},
    }


def node_state(cluster, node, prefix='cn-', state='present', masquerade_families=FAMILIES):
    """Arguments of the ipset, vip, masquerade and fip modules for one node.

    state=absent ignores the intent and returns what removal needs: the set names and
    empty address lists, so a node can be cleaned without a cluster definition.
    """
    try:
        if state == 'absent':
            return {
                'ipset': [{'name': name} for name in set_names(prefix)],
                'vip': {'addresses': [], 'node_ips': []},
                'masquerade': {'cluster_cidrs': [], 'pod_cidrs': []},
                'fip': {'floating_ips': []},
            }
        if state != 'present':
            raise ValueError('state %r: expected present or absent' % (state,))
        unknown = [family for family in masquerade_families if family not in FAMILIES]
        if unknown:
            raise ValueError('masquerade families %r: expected a list of ipv4 and ipv6' % (masquerade_families,))
        return render(cluster, node, prefix, masquerade_families)
    except ValueError as exc:
        raise AnsibleFilterError('clusternet_cluster: %s' % exc) from None


class FilterModule(object):
    def filters(self):
        return {'node_state': node_state}

# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render the cluster intent (clusternet_cluster) into each node's host state.

Pure Python: the whole intent is validated here, types and meaning (families, membership,
duplicates, objects that would take over another's address), and turned into the arguments
of the four modules, so roles stay free of long Jinja and of a per-host argument-spec pass
over the whole cluster. plan() does the O(cluster) work once; node_args() picks one node.
Documentation lives in node_state.yml next to this file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.clusternet.node.plugins.module_utils.families import (
    FAMILIES,
    IPV4,
    IPV6,
    family_of_version,
    find_duplicate,
    one_per_family,
    parse_network,
    parse_unicast,
    special_network,
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
PORT = re.compile(r'^[0-9]{1,5}$')  # ASCII digits only: int() also reads '٨٠' as 80
NAMES_SHOWN = 10  # node names listed in a "not in nodes" error

# Keys each object of the intent takes: (required, optional). The role's argument spec
# no longer checks them (that pass cost seconds per host on a large cluster): this does.
KEYS = {
    'clusternet_cluster': (('cluster_cidrs', 'service_cidrs', 'nodes'), ('services', 'pods', 'floating_ips')),
    'node': (('node_ips', 'pod_cidrs'), ()),
    'service': (('name', 'cluster_ips'), ('namespace', 'external_ips', 'ports')),
    'port': (('port',), ('protocol',)),
    'pod': (('name', 'node', 'ips'), ('namespace',)),
    'floating IP': (('external_ip', 'internal_ip', 'gateway'), ()),
}


def _items(value, what):
    """A YAML list, or an error naming what it should have been."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise ValueError('%s must be a list, got %r' % (what, value))
    return list(value)


def _mapping(value, what, kind=None):
    """A mapping; with kind, holding every required key of KEYS[kind] and no unknown one."""
    if not isinstance(value, dict):
        raise ValueError('%s must be a mapping, got %r' % (what, value))
    if kind:
        required, optional = KEYS[kind]
        missing = [key for key in required if value.get(key) is None]
        if missing:
            raise ValueError('%s is missing %s' % (what, ', '.join(missing)))
        unknown = sorted(str(key) for key in value if key not in required and key not in optional)
        if unknown:
            raise ValueError('%s has unknown key %s: expected %s' % (what, ', '.join(repr(key) for key in unknown), ', '.join(required + optional)))
    return value


def _text(value, what):
    """A name: a non-empty string (an integer is taken as its digits, as YAML may type it)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise ValueError('%s must be a non-empty string, got %r' % (what, value))
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


def _networks(values, what):
    """Parsed CIDRs of a cluster-wide list, none covering special-purpose space (0.0.0.0/0 included)."""
    out = []
    for value in _items(values, what):
        net = parse_network(value, '%s entry' % what)
        reason = special_network(net)
        if reason:
            raise ValueError('%s entry %r: %s, not a pod or service network' % (what, value, reason))
        out.append(net)
    return _unique(out, what)


def _addresses(values, what):
    return [parse_unicast(value, '%s entry' % what) for value in _items(values, what)]


def _containing(nets, address):
    """The first of nets that holds address, or None."""
    for net in nets:
        if net.version == address.version and address in net:
            return net
    return None


def set_names(prefix):
    """The managed set names for a prefix; each IPv6 name must fit the kernel's limit."""
    names = [str(prefix) + suffix for suffix, dummy in SETS]
    for name in names:
        if not SET_NAME_CHARS.match(name) or len(IPV6_SET_PREFIX + name) > MAX_SET_NAME:
            raise ValueError('ipset prefix %r gives set name %r: names may use letters, digits and _.:- and %s%s must be at most %d characters'
                             % (prefix, name, IPV6_SET_PREFIX, name, MAX_SET_NAME))
    return names


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


def _refuse_overlap(owned, what):
    overlap = _first_overlap(owned)
    if overlap:
        (wide, wide_owner), (net, owner) = overlap
        raise ValueError('%s %s %s overlaps %s %s %s' % (owner, what, net, wide_owner, what, wide))


def _parse_nodes(nodes, cluster_nets, service_nets, families):
    """node name -> {'node_ips': {family: addr}, 'pod_cidrs': {family: net}}, and node IP -> node."""
    out = {}
    node_ip_owner, pod_cidrs = {}, []
    for name, node in _mapping(nodes, 'nodes').items():
        name = _text(name, 'node name')
        what = 'node %s' % name
        node = _mapping(node, what, 'node')
        ips = _addresses(node.get('node_ips'), '%s node_ips' % what)
        cidrs = [parse_network(v, '%s pod_cidrs entry' % what) for v in _items(node.get('pod_cidrs'), '%s pod_cidrs' % what)]
        parsed = {
            'node_ips': _per_cluster_family(ips, families, '%s node_ips' % what),
            'pod_cidrs': _per_cluster_family(cidrs, families, '%s pod_cidrs' % what),
        }
        for ip in ips:
            # A node IP in a pod or service network would be masqueraded as pod traffic
            # or taken over by a VIP on every node.
            net = _containing(cluster_nets, ip) or _containing(service_nets, ip)
            if net is not None:
                raise ValueError('%s node IP %s is inside %s %s' % (what, ip, 'cluster CIDR' if net in cluster_nets else 'service CIDR', net))
            _claim(node_ip_owner, ip, what, 'node IP')
        for cidr in cidrs:
            if not any(cidr.version == net.version and cidr.subnet_of(net) for net in cluster_nets):
                raise ValueError('%s pod CIDR %s is not inside any cluster CIDR' % (what, cidr))
            pod_cidrs.append((cidr, what))
        out[name] = parsed
    if not out:
        raise ValueError('nodes is empty: the cluster needs at least one node')
    _refuse_overlap(pod_cidrs, 'pod CIDR')
    return out, node_ip_owner


def _parse_services(services, cluster_nets, service_nets, families, node_ip_owner):
    """A list of {'ips': [cluster then external addresses], 'ports': [(proto, port)]}, and service IP -> service."""
    out = []
    ip_owner, names = {}, {}
    for index, service in enumerate(_items(services, 'services')):
        service = _mapping(service, 'services[%d]' % index, 'service')
        what = 'service %s/%s' % (_text(service.get('namespace', 'default'), 'services[%d] namespace' % index),
                                  _text(service.get('name'), 'services[%d] name' % index))
        _claim(names, what, 'services[%d]' % index, 'name')
        cluster_ips = _addresses(service.get('cluster_ips'), '%s cluster_ips' % what)
        if not cluster_ips:
            raise ValueError('%s has no cluster_ips' % what)
        one_per_family(_in_families(cluster_ips, families, '%s cluster_ips' % what), '%s cluster IP' % what)
        for ip in cluster_ips:
            if _containing(service_nets, ip) is None:
                raise ValueError('%s cluster IP %s is not inside any service CIDR' % (what, ip))
            _claim(ip_owner, ip, what, 'cluster IP')
        external_ips = _in_families(_addresses(service.get('external_ips'), '%s external_ips' % what), families, '%s external_ips' % what)
        for ip in external_ips:
            # Every node puts every service IP on kube-dummy-if: a node IP there takes
            # that node's address over on all the others.
            if ip in node_ip_owner:
                raise ValueError('%s external IP %s is the node IP of %s' % (what, ip, node_ip_owner[ip]))
            net = _containing(cluster_nets, ip)
            if net is not None:
                raise ValueError('%s external IP %s is inside cluster CIDR %s' % (what, ip, net))
            ip_owner.setdefault(ip, what)  # several services may share an external IP
        ips = _unique(cluster_ips + external_ips, '%s cluster_ips and external_ips' % what)
        out.append({'what': what, 'ips': ips, 'ports': _parse_ports(service.get('ports'), what)})
    return out, ip_owner


def _parse_ports(ports, what):
    out = []
    for index, port in enumerate(_items(ports, '%s ports' % what)):
        port = _mapping(port, '%s ports[%d]' % (what, index), 'port')
        protocol = port.get('protocol', 'tcp')
        if not isinstance(protocol, str) or protocol.lower() not in PROTOCOLS:
            raise ValueError('%s port protocol %r: expected one of %s' % (what, protocol, ', '.join(PROTOCOLS)))
        number = port.get('port')
        # bool is an int to Python (true would be port 1) and a float is no port number.
        if isinstance(number, str) and PORT.match(number):
            number = int(number)
        if isinstance(number, bool) or not isinstance(number, int) or not 0 < number < 65536:
            raise ValueError('%s port %r: expected a number from 1 to 65535' % (what, port.get('port')))
        out.append((protocol.lower(), number))
    return _unique(out, '%s ports' % what)


def _parse_pods(pods, nodes):
    """node name -> [pod IPs], and pod IP -> pod; every pod IP lies in its node's pod CIDR of that family."""
    out = dict((name, []) for name in nodes)
    pod_ip_owner, names = {}, {}
    for index, pod in enumerate(_items(pods, 'pods')):
        pod = _mapping(pod, 'pods[%d]' % index, 'pod')
        what = 'pod %s/%s' % (_text(pod.get('namespace', 'default'), 'pods[%d] namespace' % index),
                              _text(pod.get('name'), 'pods[%d] name' % index))
        _claim(names, what, 'pods[%d]' % index, 'name')
        node = _text(pod.get('node'), '%s node' % what)
        if node not in nodes:
            raise ValueError('%s is on node %s, which is not in nodes' % (what, node))
        ips = _addresses(pod.get('ips'), '%s ips' % what)
        one_per_family(ips, '%s IP' % what)
        for ip in ips:
            cidr = nodes[node]['pod_cidrs'].get(family_of_version(ip.version))
            if cidr is None or ip not in cidr:
                raise ValueError('%s IP %s is not inside node %s pod CIDR %s' % (what, ip, node, cidr))
            _claim(pod_ip_owner, ip, what, 'pod IP')
        out[node].extend(ips)
    return out, pod_ip_owner


def _parse_floating_ips(floating_ips, nodes, families, nets, owners):
    """node name -> [{'external_ip', 'internal_ip'}] for the FIPs that node is gateway of.

    nets: (cluster, service) networks; owners: (node IP, service IP, pod IP) -> owner.
    The external IP is DNATed to the pod on its gateway, so it must be nobody else's
    address; the internal IP must be a pod's: anything else sends the traffic to
    whoever holds or later gets that address.
    """
    cluster_nets, service_nets = nets
    node_ip_owner, service_ip_owner, pod_ip_owner = owners
    out = dict((name, []) for name in nodes)
    external_owner, internal_owner = {}, {}
    for index, fip in enumerate(_items(floating_ips, 'floating_ips')):
        fip = _mapping(fip, 'floating_ips[%d]' % index, 'floating IP')
        what = 'floating IP %s' % fip.get('external_ip')
        external = parse_unicast(fip.get('external_ip'), 'floating_ips[%d] external_ip' % index)
        internal = parse_unicast(fip.get('internal_ip'), '%s internal_ip' % what)
        _in_families([external], families, what)
        if external.version != internal.version:
            raise ValueError('%s maps to %s: both must be of one family' % (what, internal))
        for owner, kind in ((node_ip_owner, 'node IP'), (service_ip_owner, 'service IP'), (pod_ip_owner, 'pod IP')):
            if external in owner:
                raise ValueError('%s is the %s of %s: its traffic would be DNATed to %s' % (what, kind, owner[external], internal))
        for kind, kind_nets in (('cluster CIDR', cluster_nets), ('service CIDR', service_nets)):
            net = _containing(kind_nets, external)
            if net is not None:
                raise ValueError('%s is inside %s %s' % (what, kind, net))
        if _containing(cluster_nets, internal) is None:
            raise ValueError('%s internal IP %s is not inside any cluster CIDR (%s)' % (what, internal, ', '.join(str(net) for net in cluster_nets)))
        if internal not in pod_ip_owner:
            raise ValueError('%s internal IP %s is not the IP of any pod in pods' % (what, internal))
        _claim(external_owner, external, 'floating_ips[%d]' % index, 'floating IP')
        _claim(internal_owner, internal, what, 'internal IP')
        gateway = _text(fip.get('gateway'), '%s gateway' % what)
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


def _masquerade_families(families):
    if isinstance(families, str) or any(family not in FAMILIES for family in _items(families, 'masquerade families')):
        raise ValueError('masquerade families %r: expected a list of ipv4 and ipv6' % (families,))
    return families


def plan(cluster):
    """Validate the whole intent once and render every node's share of it.

    Returns {'shared': what every node gets, 'nodes': {name: what only that node gets}},
    plain lists and strings, both families; node_args() turns one node's share into
    module arguments with that node's prefix and masquerade families.
    Raises ValueError naming the first offending value.
    """
    cluster = _mapping(cluster, 'clusternet_cluster', 'clusternet_cluster')
    cluster_nets = _networks(cluster.get('cluster_cidrs'), 'cluster_cidrs')
    if not cluster_nets:
        raise ValueError('cluster_cidrs is empty: the cluster needs a pod network')
    families = [family for family in FAMILIES if any(family_of_version(net.version) == family for net in cluster_nets)]
    service_nets = _in_families(_networks(cluster.get('service_cidrs'), 'service_cidrs'), families, 'service CIDR')
    _refuse_overlap([(net, 'cluster_cidrs') for net in cluster_nets] + [(net, 'service_cidrs') for net in service_nets], 'entry')
    nodes, node_ip_owner = _parse_nodes(cluster.get('nodes'), cluster_nets, service_nets, families)
    services, service_ip_owner = _parse_services(cluster.get('services'), cluster_nets, service_nets, families, node_ip_owner)
    pods, pod_ip_owner = _parse_pods(cluster.get('pods'), nodes)
    gateway_of = _parse_floating_ips(cluster.get('floating_ips'), nodes, families, (cluster_nets, service_nets),
                                     (node_ip_owner, service_ip_owner, pod_ip_owner))

    ip_ports, port_owner = [], {}
    for service in services:
        for ip in service['ips']:
            for protocol, port in service['ports']:
                entry = '%s,%s:%d' % (ip, protocol, port)
                _claim(port_owner, entry, service['what'], 'service IP and port')
                ip_ports.append(entry)
    return {
        'shared': {
            'families': list(families),
            'entries': {
                'pod-subnets': _ordered(spec['pod_cidrs'][f] for spec in nodes.values() for f in families),
                'node-ips': _ordered(spec['node_ips'][f] for spec in nodes.values() for f in families),
                'svip': _ordered(ip for service in services for ip in service['ips']),
                'svip-prt': ip_ports,
            },
            'cluster_cidrs': _ordered(cluster_nets),
        },
        'nodes': dict((name, {
            'node_ips': [str(spec['node_ips'][f]) for f in families],
            'pod_cidrs': [str(spec['pod_cidrs'][f]) for f in families],
            'local_pods': _ordered(pods[name]),
            'floating_ips': gateway_of[name],
        }) for name, spec in nodes.items()),
    }


def missing_node(node, names):
    """The error for a node the intent does not have, listing at most NAMES_SHOWN known names."""
    names = list(names)
    shown = ', '.join(names[:NAMES_SHOWN]) + (', ... %d more' % (len(names) - NAMES_SHOWN) if len(names) > NAMES_SHOWN else '')
    return 'node %s is not in nodes (%s)' % (node, shown)


def node_args(rendered, node, prefix='cn-', masquerade_families=FAMILIES):
    """The ipset, vip, masquerade and fip arguments of one node of a plan().

    masquerade_families: the families whose pod traffic is masqueraded (flannel #1906);
    the others get no masquerade rules at all. O(this node's share): the cluster-wide
    lists are the plan's own, not copies.
    """
    names = set_names(prefix)
    masquerade_families = _masquerade_families(masquerade_families)
    shared = rendered['shared']
    this = rendered['nodes'].get(str(node))
    if this is None:
        raise ValueError(missing_node(node, rendered['nodes']))
    entries = dict(shared['entries'], **{'local-pods': this['local_pods']})

    def masqueraded(values):
        return [value for value in values if (IPV6 if ':' in value else IPV4) in masquerade_families]
    return {
        'ipset': [{'name': name, 'set_type': set_type, 'families': list(shared['families']), 'entries': entries[suffix]}
                  for name, (suffix, set_type) in zip(names, SETS)],
        'vip': {'addresses': shared['entries']['svip'], 'node_ips': this['node_ips']},
        'masquerade': {'cluster_cidrs': masqueraded(shared['cluster_cidrs']), 'pod_cidrs': masqueraded(this['pod_cidrs'])},
        'fip': {'floating_ips': this['floating_ips']},
    }


def absent_args(prefix):
    """What removal needs: the set names and empty address lists, no intent."""
    return {
        'ipset': [{'name': name} for name in set_names(prefix)],
        'vip': {'addresses': [], 'node_ips': []},
        'masquerade': {'cluster_cidrs': [], 'pod_cidrs': []},
        'fip': {'floating_ips': []},
    }


def _filter_error(exc):
    return AnsibleFilterError('clusternet_cluster: %s' % exc)


def node_state(cluster, node, prefix='cn-', state='present', masquerade_families=FAMILIES):
    """Arguments of the ipset, vip, masquerade and fip modules for one node.

    state=absent ignores the intent and returns what removal needs, so a node can be
    cleaned without a cluster definition.
    """
    try:
        if state == 'absent':
            return absent_args(prefix)
        if state != 'present':
            raise ValueError('state %r: expected present or absent' % (state,))
        set_names(prefix)
        _masquerade_families(masquerade_families)
        return node_args(plan(cluster), node, prefix, masquerade_families)
    except ValueError as exc:
        raise _filter_error(exc) from None


def read_intent(path):
    """The intent from a JSON or YAML file on the controller: the clusternet_cluster dict
    itself, or a mapping of that one key (a group_vars file moved out of the inventory).

    Read with json, or libyaml's safe loader, not as an inventory variable: Ansible's loader
    tags every scalar with its origin, which at 3,000 nodes costs more CPU than the rest
    of a no-change converge (bench/bench_fleet.py measures both).
    """
    try:
        with open(path, 'rb') as handle:
            text = handle.read()
    except (OSError, IOError) as exc:
        raise ValueError('clusternet_cluster_file %s: %s' % (path, exc.strerror or exc)) from None
    try:
        data = json.loads(text)
    except ValueError:
        try:
            data = yaml.load(text, Loader=getattr(yaml, 'CSafeLoader', yaml.SafeLoader))
        except yaml.YAMLError as exc:
            raise ValueError('clusternet_cluster_file %s is neither JSON nor YAML: %s' % (path, exc)) from None
    if isinstance(data, dict) and list(data) == ['clusternet_cluster']:
        data = data['clusternet_cluster']
    return data


def node_plan(cluster, keep_error=False, path=None):
    """plan() as a filter: validate the intent once for the play, every node's share.

    path: read the intent from this file instead (read_intent()); cluster must then be None.
    keep_error: return {'error': message} instead of failing, so a run_once render can
    hand the error to every host of the play (clusternet.node.node_apply fails each with
    it); a failed run_once task would stop the others without reporting them failed.
    """
    try:
        if path:
            if cluster is not None:
                raise ValueError('set clusternet_cluster or clusternet_cluster_file (%s), not both' % path)
            cluster = read_intent(path)
        return plan(cluster)
    except ValueError as exc:
        if keep_error:
            return {'error': str(_filter_error(exc))}
        raise _filter_error(exc) from None


class FilterModule(object):
    def filters(self):
        return {'node_state': node_state, 'node_plan': node_plan}

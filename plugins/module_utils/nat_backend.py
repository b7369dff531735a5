# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backend option of masquerade and fip: `auto` resolved, and a switch migrated in one run.

A run manages the module's part on its backend (the intent) and removes the module's part from
the other backend (a cleanup), both planned under the one host lock before anything is
written, so a refusal of either (a foreign chain, a foreign jump to our chain) still stops
the run before its first write. The cleanup is the other backend's own engine run with the
parameters that remove everything of the module there (cleanup_params), so the ownership
rules of that backend are the ones that decide what goes: on iptables our marked chains,
our commented jumps and FIP rules, in the iptables-legacy and iptables-nft backends alike;
on nftables the module's half of `ip clusternet` / `ip6 clusternet`, the other module's half
kept. Its writes come after the intent's, so the NAT is never missing in between.

The cleanup is read only where the other backend can hold something: iptables when its save
tools are installed and a nat table exists (in nftables' list or the legacy /proc list),
nftables when `nft list tables` lists one of our tables.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.clusternet.node.plugins.module_utils import engine, fip, nat_nft, nft
from ansible_collections.clusternet.node.plugins.module_utils import masquerade as masq
from ansible_collections.clusternet.node.plugins.module_utils.engine import Step
from ansible_collections.clusternet.node.plugins.module_utils.families import FAMILIES

IPTABLES, NFTABLES = 'iptables', 'nftables'
OTHER = {IPTABLES: NFTABLES, NFTABLES: IPTABLES}
# kube-proxy's nftables mode keeps its rules in these tables: its NAT is on nftables, so is ours.
KUBE_PROXY_TABLES = frozenset((('ip', 'kube-proxy'), ('ip6', 'kube-proxy')))


def choose(nft_tables, has_iptables):
    """What `auto` means: nftables where kube-proxy's nftables tables exist or no iptables is
    installed, iptables otherwise. nft_tables: {(family, name)} as `nft list tables` lists them."""
    return NFTABLES if not has_iptables or KUBE_PROXY_TABLES & set(nft_tables) else IPTABLES


def resolve(backend, kernel):
    """backend, `auto` resolved on this host."""
    return choose(kernel.nft_tables(), kernel.has_iptables()) if backend == 'auto' else backend


def holds(kernel, backend):
    """Whether backend can hold anything of ours, so that the cleanup reads it: iptables when its
    tools are installed and a nat table exists (iptables-nft's are nftables tables; a legacy
    one is in /proc, and its save tool would create a missing one); nftables when one of our
    tables is listed (none can be where nft is missing or cannot list tables)."""
    tables = kernel.nft_tables()
    if backend == NFTABLES:
        return bool(tables & set((nft.NFT_FAMILY[family], nft.TABLE) for family in FAMILIES))
    return kernel.has_iptables() and (bool(tables & set((('ip', 'nat'), ('ip6', 'nat'))))
                                      or any('nat' in kernel.legacy_tables(family) for family in FAMILIES))


def masquerade_cleanup(params, backend):
    """masquerade's parameters that remove its part of backend."""
    return dict(params, state='absent', backend=backend, purge_other_backend=backend == IPTABLES)


def fip_cleanup(params, backend):
    """fip's parameters that remove every FIP of backend. Conntrack is not flushed: the intent's
    backend carries the FIPs on, and their established flows keep their NAT binding."""
    return dict(params, floating_ips=[], state='present', exclusive=True, flush_conntrack=False,
                backend=backend, purge_other_backend=backend == IPTABLES)


def fip_dropped(intent, removed):
    """The external IPs the cleanup removes (removed: {family: [{external_ip, ...}]}) that the intent
    neither carries on nor names for removal: unless state present and exclusive (the list is then
    every FIP), a FIP of the old backend the intent does not name would be lost, not moved."""
    params = intent.params
    if params['state'] == 'present' and params['exclusive']:
        return []
    named = set(str(external) for family in FAMILIES for external in intent.wanted[family])
    return [item['external_ip'] for family in FAMILIES for item in removed[family] if item['external_ip'] not in named]


MODULES = {
    'masquerade': (lambda: {IPTABLES: masq.Engine(), NFTABLES: nat_nft.MasqueradeEngine()}, masquerade_cleanup,
                   lambda intent, removed: []),
    'fip': (lambda: {IPTABLES: fip.Engine(), NFTABLES: nat_nft.FipEngine()}, fip_cleanup, fip_dropped),
}


class Switch(object):
    """engine.run's engine of masquerade and fip: the intent on backend, the cleanup of the other."""

    def __init__(self, engines, backend, cleanup_params, dropped):
        self.backend, self.old = backend, OTHER[backend]
        self.engine, self.cleanup = engines[backend], engines[self.old]
        self.cleanup_params, self.dropped = cleanup_params, dropped

    def validate(self, params):
        return self.engine.validate(params), self.cleanup.validate(self.cleanup_params(params, self.old))

    def read(self, kernel, intents):
        intent, cleanup = intents
        return self.engine.read(kernel, intent), self.cleanup.read(kernel, cleanup) if holds(kernel, self.old) else None

    def own(self, seen, intents):
        return self.engine.own(seen[0], intents[0]), None if seen[1] is None else self.cleanup.own(seen[1], intents[1])

    def plan(self, owned, intents):
        plan = self.engine.plan(owned[0], intents[0])
        if owned[1] is None:
            return plan
        old = self.cleanup.plan(owned[1], intents[1])
        if not old.result['changed']:
            return plan
        dropped = self.dropped(intents[0], dict((family, old.result[family].get('removed', [])) for family in FAMILIES))
        if dropped:
            raise ValueError('refusing to switch from backend %s: it holds floating IPs this run would remove there without '
                             'carrying them on (%s); list every floating IP with exclusive true and state present to move them'
                             % (self.old, ', '.join(dropped)))
        plan.result['changed'] = True
        plan.result['migrated'] = dict([('backend', self.old)] + [(family, old.result[family]) for family in FAMILIES])
        plan.warnings.extend(old.warnings)
        plan.preflight.extend(old.preflight)
        plan.steps.extend(Step('%s (removed from backend %s)' % (step.label, self.old), step.action, step.check_label) for step in old.steps)
        for family in FAMILIES:
            if old.before.get(family) != old.after.get(family):
                plan.before[family] = plan.before.get(family, []) + ['# backend %s:' % self.old] + old.before[family]
                plan.after[family] = plan.after.get(family, []) + ['# backend %s:' % self.old] + old.after[family]
        return plan


def run(module, name, kernel=None):
    """The result of masquerade or fip (name): backend resolved, the Switch run by engine.execute
    over kernel (nat_nft.Kernel: iptables, nft and conntrack in one), the backend reported."""
    kernel = kernel or nat_nft.Kernel(module)
    engines, cleanup_params, dropped = MODULES[name]

    def action():
        backend = resolve(module.params.get('backend') or IPTABLES, kernel)
        result = engine.execute(Switch(engines(), backend, cleanup_params, dropped), kernel, module.params,
                                module.check_mode, module._diff, module.warn)
        result['backend'] = backend
        return result
    return engine.report(module, action)

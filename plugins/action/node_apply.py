# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Apply one node's share of a rendered intent: the ipset, vip, masquerade and fip modules
called from the controller with arguments built in Python.

Why an action: the cluster-wide lists (every node's pod CIDRs and IPs, every service IP)
come from the play's rendered plan (the node_plan filter, run once) and go to the modules
as they are, so no templating pass walks them per host, no role argument spec validates
them per host, and the module results stay on the controller. Documentation lives in
plugins/modules/node_apply.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json

from ansible.module_utils.common.collections import is_sequence
from ansible.plugins.action import ActionBase
from ansible_collections.clusternet.node.plugins.filter.node_state import absent_args, node_args

# The options each module takes besides what the intent renders; passed on unchecked
# (the module checks them), unknown ones refused here, before any module runs.
EXTRA_OPTIONS = {
    'ipset': ('exclusive',),
    'vip': ('interface', 'link_kind', 'exclusive', 'adopt'),
    'masquerade': ('chain', 'comment', 'random_fully', 'skip_mark', 'allow_foreign_chain', 'purge_other_backend', 'backend'),
    'fip': ('exclusive', 'dnat_chain', 'snat_chain', 'flush_conntrack', 'allow_foreign_chain', 'purge_other_backend', 'backend'),
}
# Module result keys kept per call (diffs go to the task's diff): the rest (invocation,
# per-family dumps) grows with the cluster and is not carried into the play's results.
KEPT = ('changed', 'failed', 'msg')


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(('node', 'state', 'prefix', 'masquerade_families', 'plan_var', 'persist') + tuple(EXTRA_OPTIONS))

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        dummy, args = self.validate_argument_spec(
            argument_spec=dict(
                node=dict(type='str'),
                state=dict(type='str', choices=['present', 'absent'], default='present'),
                prefix=dict(type='str', default='cn-'),
                masquerade_families=dict(type='list', elements='str', choices=['ipv4', 'ipv6'], default=['ipv4', 'ipv6']),
                plan_var=dict(type='str', default='node_network_plan'),
                persist=dict(type='path'),
                **dict((module, dict(type='dict', default={})) for module in EXTRA_OPTIONS)
            ),
            required_if=[('state', 'present', ('node',))],
        )
        try:
            calls = self._calls(args, task_vars)
        except ValueError as exc:
            return dict(result, failed=True, msg=str(exc))
        try:
            return self._apply(result, calls, task_vars, args['persist'] if args['state'] == 'present' else None)
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)

    def _calls(self, args, task_vars):
        """(module, label, arguments) in the order the node_network role always applied them."""
        for module, allowed in EXTRA_OPTIONS.items():
            unknown = sorted(set(args[module]) - set(allowed))
            if unknown:
                raise ValueError('%s options %s: expected %s' % (module, ', '.join(unknown), ', '.join(allowed)))
        state = args['state']
        if state == 'absent':
            try:
                share = absent_args(args['prefix'])
            except ValueError as exc:
                raise ValueError('clusternet_cluster: %s' % exc) from None
        else:
            rendered = task_vars.get(args['plan_var'])
            if isinstance(rendered, dict) and 'error' in rendered:
                raise ValueError(rendered['error'])  # the intent is invalid: every host fails with it
            if not isinstance(rendered, dict) or not isinstance(rendered.get('nodes'), dict):
                raise ValueError('no rendered intent in %s: set it with the clusternet.node.node_plan filter first '
                                 '(the node_network role does, once per play)' % args['plan_var'])
            try:
                share = node_args(rendered, args['node'], args['prefix'], args['masquerade_families'])
            except ValueError as exc:
                raise ValueError('clusternet_cluster: %s' % exc) from None
        calls = [('ipset', item['name'], dict(item, state=state, **args['ipset'])) for item in share['ipset']]
        # kube-dummy-if is the collection's, so removal deletes it with the VIPs; the fip
        # module's exclusive empty list (state present) removes all of ours and their chains.
        calls.append(('vip', 'VIPs', dict(share['vip'], state=state, delete_interface=state == 'absent', **args['vip'])))
        calls.append(('masquerade', 'masquerade', dict(share['masquerade'], state=state, **args['masquerade'])))
        calls.append(('fip', 'floating IPs', dict(share['fip'], **args['fip'])))
        return calls

    def _apply(self, result, calls, task_vars, persist):
        # Every call runs in check mode first (its validate, read and plan against the node's
        # kernel, no write), so a node that any module refuses is refused before the first
        # write. Only the calls whose check run would change something run again for real:
        # a no-change run costs what it cost before the preflight.
        checked, diffs = [], []
        for module, label, module_args in calls:
            out = self._call(module, module_args, task_vars, check=True)
            checked.append(out)
            if module_args.get('backend') == 'auto' and out.get('backend'):
                # The real run and the persisted call keep the backend the check chose: at boot,
                # before kube-proxy has made its tables, auto could choose the other one.
                module_args['backend'] = out['backend']
            if out.get('failed'):
                # Nothing was written: the check runs' changed says only what would change.
                return self._failed(result, [(module, label, dict(out, changed=False))], 'nothing (checked before any write)')
        done = []
        for (module, label, module_args), out in zip(calls, checked):
            if out.get('changed') and not self._task.check_mode:
                out = self._call(module, module_args, task_vars)
            done.append((module, label, out))
            diff = out.get('diff')
            if diff:
                diffs.extend(diff if is_sequence(diff) else [diff])
            if out.get('failed'):
                applied = ', '.join('%s %s' % (m, item) for m, item, o in done[:-1] if o.get('changed')) or 'nothing'
                return self._failed(result, done, applied)
        results = [self._entry(module, label, out) for module, label, out in done]
        if persist:
            entry, diff = self._persist(persist, calls, task_vars)
            results.append(entry)
            diffs.extend([diff] if diff else [])
            if entry.get('failed'):
                result.update(failed=True, results=results, changed=any(e.get('changed') for e in results),
                              msg='writing %s failed (every module call was applied): %s' % (persist, entry.get('msg')))
                return result
        result.update(changed=any(entry.get('changed') for entry in results), results=results)
        if diffs:
            result['diff'] = diffs
        return result

    def _call(self, module, module_args, task_vars, check=False):
        """Run one module on the node; check forces check mode. ActionBase has no per-call switch
        (ansible/ansible#87071) and reads the task's or, in older cores, the play context's flag."""
        saved = self._task.check_mode, self._play_context.check_mode
        self._task.check_mode = self._play_context.check_mode = saved[0] or check
        try:
            return self._execute_module(module_name='clusternet.node.' + module, module_args=module_args, task_vars=task_vars)
        finally:
            self._task.check_mode, self._play_context.check_mode = saved

    @staticmethod
    def _entry(module, label, out):
        return dict(dict((key, out[key]) for key in KEPT if key in out), module=module, item=label)

    def _failed(self, result, done, applied):
        """The last of done failed: say which module, why, and what the calls before it changed."""
        module, label, out = done[-1]
        results = [self._entry(*entry) for entry in done]
        result.update(failed=True, results=results, changed=any(entry.get('changed') for entry in results),
                      msg='clusternet.node.%s (%s) failed: %s; changed before it: %s' % (module, label, out.get('msg'), applied))
        return result

    def _persist(self, path, calls, task_vars):
        """Write the calls' arguments to path on the node with the copy module (idempotent by
        checksum); in check mode only compare. Returns (result entry, diff or None)."""
        # _execute_module added its _ansible_* settings to each call's arguments: not the module's own.
        content = json.dumps({'calls': [{'module': module, 'args': dict((k, v) for k, v in args.items() if not k.startswith('_ansible_'))}
                                        for module, dummy, args in calls]}, indent=1, sort_keys=True) + '\n'
        old = None
        if self._task.check_mode or self._task.diff:
            current = self._execute_module(module_name='ansible.legacy.slurp', module_args={'src': path}, task_vars=task_vars)
            old = '' if current.get('failed') else base64.b64decode(current['content']).decode('utf-8', 'replace')
        diff = {'before_header': path, 'after_header': path, 'before': old, 'after': content} if self._task.diff and old != content else None
        if self._task.check_mode:
            return {'changed': old != content, 'module': 'copy', 'item': path}, diff
        if self._connection._shell.tmpdir is None:
            self._make_tmp_path()
        source = self._connection._shell.join_path(self._connection._shell.tmpdir, 'state.json')
        self._transfer_data(source, content)
        self._fixup_perms2((self._connection._shell.tmpdir, source))
        out = self._execute_module(module_name='ansible.legacy.copy', task_vars=task_vars, module_args={
            'src': source, 'dest': path, 'mode': '0600', 'owner': 'root', 'group': 'root', '_original_basename': 'state.json'})
        entry = dict((key, out[key]) for key in KEPT if key in out)
        return dict(entry, module='copy', item=path), diff

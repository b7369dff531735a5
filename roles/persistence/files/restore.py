# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restore the host state clusternet.node last converged on this node, without Ansible.

usage: restore.py [--node-ip-timeout SECONDS] DIR

DIR (written by the clusternet.node.persistence role) holds:
  state.json      {"calls": [{"module": NAME, "args": {...}}, ...]}: the arguments the
                  roles passed to the collection's modules on the last converge;
  plugins.bundle  the collection's plugins/module_utils/*.py and the modules those
                  calls name, each file after a line "#### clusternet-node file PATH LINES".

Each call runs the module's own main() from the bundle, with a stand-in for
AnsibleModule that takes its defaults from the module's own argument_spec: the same
code and the same arguments as the converge, so a restore cannot drift from it. Only
the objects those calls own are touched. VIP routes are sourced from node IPs, which
may come up late (DHCP): vip calls run last, once their node IPs are present and not
tentative, or fail after the timeout with a message naming the missing addresses.
Exit status 0 when every call succeeded, 1 otherwise (every call is attempted).
"""

from __future__ import absolute_import, division, print_function

import argparse
import copy
import importlib.abc
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types

MARKER = '#### clusternet-node file '
COLLECTION = 'ansible_collections.clusternet.node'
BOOLEANS_TRUE = ('y', 'yes', 'on', '1', 'true', 't')
BOOLEANS_FALSE = ('n', 'no', 'off', '0', 'false', 'f')
SBIN = ('/sbin', '/usr/sbin', '/usr/local/sbin')


class ModuleExit(Exception):
    """AnsibleModule.exit_json or fail_json: the module's run ends with this result."""

    def __init__(self, result):
        Exception.__init__(self, result.get('msg', ''))
        self.result = result


# ---- the bundle: the collection's plugins, imported from one file ----

def read_bundle(text):
    """{path: source} from a bundle's text."""
    files = {}
    lines = text.split('\n')
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.startswith(MARKER):
            if line:
                raise ValueError('plugins bundle: line %d is outside any file: %r' % (index + 1, line[:80]))
            index += 1
            continue
        path, _sep, count = line[len(MARKER):].rpartition(' ')
        count = int(count)
        files[path] = '\n'.join(lines[index + 1:index + 1 + count]) + '\n'
        index += 1 + count
    return files


class BundleImporter(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ansible_collections.clusternet.node.plugins.* from the bundle's sources."""

    def __init__(self, files):
        self.sources = {}
        for path, source in files.items():
            name = '%s.%s' % (COLLECTION, path[:-len('.py')].replace('/', '.'))
            self.sources[name] = (path, source)
        self.packages = set()
        for name in self.sources:
            parts = name.split('.')
            self.packages.update('.'.join(parts[:end]) for end in range(1, len(parts)))

    def find_spec(self, fullname, path=None, target=None):
        if fullname in self.packages or fullname in self.sources:
            return importlib.util.spec_from_loader(fullname, self, is_package=fullname in self.packages)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        if module.__name__ in self.packages:
            module.__path__ = []
            return
        path, source = self.sources[module.__name__]
        exec(compile(source, path, 'exec'), module.__dict__)  # pylint: disable=exec-used


# ---- the stand-in for ansible.module_utils.basic ----

def missing_required_lib(library, reason=None, url=None):
    return 'Failed to import the required Python library (%s) on %s\'s Python %s.' % (
        library, os.uname()[1], sys.executable) + (' This is required %s.' % reason if reason else '') + (
        ' See %s for more info.' % url if url else '')


def _convert(kind, value, name):
    if kind in (None, 'raw'):
        return value
    if kind == 'str':
        return value if isinstance(value, str) else str(value)
    if kind == 'bool':
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in BOOLEANS_TRUE or text in BOOLEANS_FALSE:
            return text in BOOLEANS_TRUE
    elif kind == 'int':
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip('+-').isdigit():
            return int(value)
    elif kind == 'list':
        if isinstance(value, list):
            return value
        if isinstance(value, str):
            return value.split(',')
        if isinstance(value, (int, float)):
            return [str(value)]
    elif kind == 'dict':
        if isinstance(value, dict):
            return value
    raise ValueError('argument %s is of type %s and we were unable to convert to %s' % (name, type(value).__name__, kind))


def validate(spec, args, where=''):
    """The module's params: args checked against spec, converted, defaults filled in,
    as AnsibleModule does for the options the collection's modules use."""
    unknown = sorted(set(args) - set(spec))
    if unknown:
        raise ValueError('Unsupported parameters for %s: %s' % (where or 'module', ', '.join(unknown)))
    params = {}
    for name, option in spec.items():
        label = where + name
        value = args.get(name)
        if value is None:
            if option.get('required'):
                raise ValueError('missing required arguments: %s' % label)
            value = copy.deepcopy(option.get('default'))
        if value is not None:
            value = _convert(option.get('type', 'str'), value, label)
            if option.get('type') == 'list':
                elements = option.get('elements')
                value = [_convert(elements, each, label) for each in value]
                if elements == 'dict' and 'options' in option:
                    value = [validate(option['options'], each, '%s.' % label) for each in value]
            elif option.get('type') == 'dict' and 'options' in option:
                value = validate(option['options'], value, '%s.' % label)
            choices = option.get('choices')
            if choices is not None:
                bad = [each for each in (value if isinstance(value, list) else [value]) if each not in choices]
                if bad:
                    raise ValueError('value of %s must be one of: %s, got: %s' % (
                        label, ', '.join(str(c) for c in choices), ', '.join(str(b) for b in bad)))
        params[name] = value
    return params


class AnsibleModule(object):
    """What the collection's modules and module_utils use of AnsibleModule."""

    args = {}  # the call's arguments, set by run_call before the module's main()
    params = {}  # the last call's validated parameters, defaults included (for the journal line)

    def __init__(self, argument_spec, supports_check_mode=False, **_kwargs):
        self.argument_spec = argument_spec
        self.check_mode = False
        self._diff = False
        self.warnings = []
        self._tmpdir = None
        try:
            self.params = AnsibleModule.params = validate(argument_spec, self.args)
        except ValueError as exc:
            self.fail_json(msg=str(exc))

    def get_bin_path(self, arg, required=False, opt_dirs=None):
        path = os.pathsep.join(list(opt_dirs or []) + [os.environ.get('PATH', '')] + list(SBIN))
        found = shutil.which(arg, path=path)
        if found is None and required:
            self.fail_json(msg='Failed to find required executable "%s" in paths: %s' % (arg, path))
        return found

    def run_command(self, args, data=None, binary_data=False, check_rc=False, **_kwargs):
        if data is not None and not binary_data:
            data += '\n'
        proc = subprocess.run(args, input=data, capture_output=True, text=True, check=False,
                              env=dict(os.environ, LANG='C', LC_ALL='C', LC_MESSAGES='C'))
        if check_rc and proc.returncode != 0:
            self.fail_json(msg=proc.stderr.strip(), rc=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)
        return proc.returncode, proc.stdout, proc.stderr

    def warn(self, warning):
        self.warnings.append(warning)

    @property
    def tmpdir(self):
        """A private directory for the call, removed when it exits (AnsibleModule.tmpdir)."""
        if self._tmpdir is None:
            self._tmpdir = tempfile.mkdtemp(prefix='clusternet-restore-')
        return self._tmpdir

    def _cleanup(self):
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def exit_json(self, **result):
        result.setdefault('changed', False)
        result['warnings'] = self.warnings
        self._cleanup()
        raise ModuleExit(result)

    def fail_json(self, msg, **result):
        result.update(failed=True, msg=msg, warnings=self.warnings)
        self._cleanup()
        raise ModuleExit(result)


def install(files):
    """Make the bundle and the stand-in importable, ahead of any Ansible on the node."""
    ansible = types.ModuleType('ansible')
    ansible.__path__ = []
    module_utils = types.ModuleType('ansible.module_utils')
    module_utils.__path__ = []
    basic = types.ModuleType('ansible.module_utils.basic')
    basic.AnsibleModule = AnsibleModule
    basic.missing_required_lib = missing_required_lib
    sys.modules.update({'ansible': ansible, 'ansible.module_utils': module_utils, 'ansible.module_utils.basic': basic})
    for name in [name for name in sys.modules if name == 'ansible_collections' or name.startswith('ansible_collections.')]:
        del sys.modules[name]
    importer = BundleImporter(files)
    sys.meta_path.insert(0, importer)
    return importer


def run_call(call):
    """Run one module's main() with the call's arguments; its result (failed: true on failure)."""
    AnsibleModule.args, AnsibleModule.params = call['args'], {}
    name = '%s.plugins.modules.%s' % (COLLECTION, call['module'])
    try:
        module = importlib.import_module(name)
        module.main()
    except ModuleExit as done:
        return done.result
    finally:
        AnsibleModule.args = {}
    return {'failed': True, 'msg': 'module %s returned without a result' % call['module']}


# ---- node IPs that come up late ----

def present_node_ips():
    """The addresses the kernel holds that can be a route's source: not tentative, not failed DAD."""
    out = subprocess.run(['ip', '-j', 'addr', 'show'], capture_output=True, text=True, check=True).stdout
    return set(info['local'] for link in json.loads(out or '[]') for info in link.get('addr_info', [])
               if not info.get('tentative') and not info.get('dadfailed'))


def wait_for(addresses, timeout, clock=time.monotonic, sleep=time.sleep, present=present_node_ips):
    """Wait until every address is present; the ones still missing after timeout seconds."""
    deadline = clock() + timeout
    while True:
        missing = sorted(set(addresses) - present())
        if not missing or clock() >= deadline:
            return missing
        sleep(0.25)


def summary(call, result):
    params = dict(call['args'], **AnsibleModule.params)  # with the module's defaults (interface, chain)
    what = params.get('name') or params.get('interface') or params.get('chain') or ''
    head = '%s%s' % (call['module'], ' ' + what if what else '')
    if result.get('failed'):
        return '%s: FAILED: %s' % (head, result.get('msg'))
    return '%s: %s' % (head, 'restored (changed)' if result.get('changed') else 'already in place')


def restore(directory, node_ip_timeout, log=print):
    if not os.path.exists(os.path.join(directory, 'state.json')):
        log('nothing persisted yet in %s: no converge has succeeded on this node' % directory)
        return True
    with open(os.path.join(directory, 'state.json')) as handle:
        calls = json.load(handle)['calls']
    with open(os.path.join(directory, 'plugins.bundle')) as handle:
        install(read_bundle(handle.read()))
    ok = True
    # vip last: the other modules do not depend on the node IPs, so they are not held up.
    for call in sorted(calls, key=lambda call: call['module'] == 'vip'):
        if call['module'] == 'vip' and call['args'].get('state', 'present') == 'present':
            node_ips = call['args'].get('node_ips') or []
            if set(node_ips) - present_node_ips():
                log('waiting up to %d s for node IPs %s (VIP routes are sourced from them)' % (node_ip_timeout, ', '.join(node_ips)))
                started = time.monotonic()
                missing = wait_for(node_ips, node_ip_timeout)
                if missing:
                    log('node IPs %s not present after %d s: VIPs on %s not restored (the next playbook run converges them)' % (
                        ', '.join(missing), node_ip_timeout, call['args'].get('interface', 'kube-dummy-if')))
                    ok = False
                    continue
                log('node IPs present after %.1f s' % (time.monotonic() - started))
        result = run_call(call)
        for warning in result.get('warnings') or []:
            log('%s: warning: %s' % (call['module'], warning))
        log(summary(call, result))
        ok = ok and not result.get('failed')
    return ok


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--node-ip-timeout', type=int, default=60, help='seconds to wait for the VIPs\' node IPs (default 60)')
    parser.add_argument('directory')
    args = parser.parse_args(argv)
    ok = restore(args.directory, args.node_ip_timeout, log=lambda line: print(line, flush=True))
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())

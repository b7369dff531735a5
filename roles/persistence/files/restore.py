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
tentative (compared as addresses, as the vip module parses them, not as text), or fail
after the timeout with a message naming the missing addresses.

Root runs what DIR holds, so DIR (and each directory above it) and its files must be
root's and writable by root alone (a directory above may be sticky), and DIR and its
files must not be symbolic links: otherwise the runner logs why and exits 1 having run
nothing. state.json is checked whole before anything runs: if it is not a list of calls
nothing runs; a call that is malformed (not a mapping, a module the bundle lacks, args
missing or not a mapping) is reported and skipped, and every other call is attempted.
Exit status 0 when every call succeeded, 1 otherwise.
"""

from __future__ import absolute_import, division, print_function

import argparse
import copy
import errno
import importlib.abc
import importlib.util
import json
import os
import shutil
import stat
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
FILES = ('restore.py', 'state.json', 'plugins.bundle')
CALL_KEYS = ('module', 'args')


class Refused(Exception):
    """DIR or what it holds is unsafe or unreadable as a whole: nothing runs."""


def cut(value, limit=80):
    """A value quoted for a log line, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + '...'


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


# ---- the state directory: root's alone, or nothing runs ----

def _check_owner_and_mode(what, st, sticky_ok=False):
    if st.st_uid != 0:
        raise Refused('%s is owned by uid %d, not root' % (what, st.st_uid))
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not (sticky_ok and st.st_mode & stat.S_ISVTX):
        raise Refused('%s has mode %04o: group or others can write it' % (what, stat.S_IMODE(st.st_mode)))


def check_ancestors(directory):
    """Whoever can write a directory above DIR can swap DIR itself; a sticky one lets them
    remove only their own entries, so it may be writable by others (/tmp)."""
    path = os.path.dirname(os.path.abspath(directory))
    while True:
        _check_owner_and_mode('directory %s' % path, os.stat(path), sticky_ok=True)
        if path == os.path.dirname(path):
            return
        path = os.path.dirname(path)


def _open(path, flags, name=None, dir_fd=None):
    """A descriptor of path (of name in dir_fd when given), not following a symlink;
    FileNotFoundError passes through."""
    try:
        return os.open(name or path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        # O_NOFOLLOW fails a symlink with ELOOP, or ENOTDIR along with O_DIRECTORY
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(path):
            raise Refused('%s is a symbolic link' % path) from None
        raise


def read_state_dir(directory):
    """{name: text or None when missing} of FILES, each read from the descriptor that was checked."""
    try:
        check_ancestors(directory)
        dir_fd = _open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        raise Refused('%s does not exist' % directory) from None
    except OSError as exc:
        raise Refused('cannot open %s: %s' % (directory, exc.strerror)) from None
    texts = {}
    try:
        _check_owner_and_mode('directory %s' % directory, os.fstat(dir_fd))
        for name in FILES:
            try:
                fd = _open(os.path.join(directory, name), os.O_RDONLY | os.O_NONBLOCK, name, dir_fd)
            except FileNotFoundError:
                texts[name] = None
                continue
            with os.fdopen(fd) as handle:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise Refused('%s/%s is not a regular file' % (directory, name))
                _check_owner_and_mode('%s/%s' % (directory, name), st)
                texts[name] = handle.read()
    except OSError as exc:
        raise Refused('cannot read %s: %s' % (directory, exc.strerror)) from None
    finally:
        os.close(dir_fd)
    return texts


def check_calls(document, modules):
    """The calls to run and a message per malformed one; Refused unless state.json is a list of calls."""
    if not isinstance(document, dict) or not isinstance(document.get('calls'), list):
        raise Refused('state.json holds no list "calls": %s' % cut(document))
    valid, invalid = [], []
    for number, call in enumerate(document['calls'], 1):
        if not isinstance(call, dict):
            problem = 'not a mapping: %s' % cut(call)
        elif set(call) - set(CALL_KEYS):
            problem = 'unknown keys %s' % ', '.join(cut(key) for key in sorted(map(str, set(call) - set(CALL_KEYS))))
        elif not isinstance(call.get('module'), str) or call['module'] not in modules:
            problem = 'module %s is not one the bundle holds (%s)' % (cut(call.get('module')), ', '.join(sorted(modules)))
        elif 'args' not in call:
            problem = 'module %s has no args' % call['module']
        elif not isinstance(call['args'], dict):
            problem = 'module %s: args is %s, not a mapping' % (call['module'], cut(call['args']))
        else:
            valid.append(call)
            continue
        invalid.append('state.json call %d: %s: not run' % (number, problem))
    return valid, invalid


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
    except Exception as exc:  # pylint: disable=broad-except
        # a bug or a bundle that does not import: this call fails, the others still run
        return {'failed': True, 'msg': 'module %s raised %s: %s' % (call['module'], type(exc).__name__, str(exc)[:300])}
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
    """Wait until every address is present; the ones still missing after timeout seconds, in order."""
    deadline = clock() + timeout
    while True:
        held = present()
        missing = [address for address in addresses if address not in held]
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


def node_ips_of(call, families):
    """The vip call's node IPs as the vip module parses them (192.0.2.11/32 is 192.0.2.11,
    upper-case IPv6 is the same address); None when they do not parse: the module refuses them."""
    try:
        return [families.parse_unicast(value, 'node IP') for value in _convert('list', call['args'].get('node_ips') or [], 'node_ips')]
    except ValueError:
        return None


def restore(directory, node_ip_timeout, log=print):
    texts = read_state_dir(directory)
    if texts['state.json'] is None:
        log('nothing persisted yet in %s: no converge has succeeded on this node' % directory)
        return True
    if texts['plugins.bundle'] is None:
        raise Refused('%s has state.json but no plugins.bundle' % directory)
    try:
        document = json.loads(texts['state.json'])
        files = read_bundle(texts['plugins.bundle'])
    except ValueError as exc:
        raise Refused(str(exc)[:300]) from None
    modules = set(path[len('plugins/modules/'):-len('.py')] for path in files if path.startswith('plugins/modules/'))
    calls, invalid = check_calls(document, modules)
    for line in invalid:
        log(line)
    ok = not invalid
    install(files)
    families = importlib.import_module(COLLECTION + '.plugins.module_utils.families')

    def present():
        return set(families.parse_address(address) for address in present_node_ips())
    # vip last: the other modules do not depend on the node IPs, so they are not held up.
    for call in sorted(calls, key=lambda call: call['module'] == 'vip'):
        node_ips = node_ips_of(call, families) if call['module'] == 'vip' and call['args'].get('state', 'present') == 'present' else None
        if node_ips and set(node_ips) - present():
            log('waiting up to %d s for node IPs %s (VIP routes are sourced from them)' % (
                node_ip_timeout, ', '.join(map(str, node_ips))))
            started = time.monotonic()
            missing = wait_for(node_ips, node_ip_timeout, present=present)
            if missing:
                log('node IPs %s not present after %d s: VIPs on %s not restored (the next playbook run converges them)' % (
                    ', '.join(map(str, missing)), node_ip_timeout, call['args'].get('interface', 'kube-dummy-if')))
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

    def log(line):
        print(line, flush=True)  # stdout is the unit's journal
    try:
        ok = restore(args.directory, args.node_ip_timeout, log=log)
    except Refused as exc:
        log('refusing to restore from %s, nothing was run: %s' % (args.directory, exc))
        return 1
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())

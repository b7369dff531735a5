# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restore the host state clusternet.node last converged on this node, without Ansible.

usage: restore.py [--node-ip-timeout SECONDS] DIR
       restore.py --reconcile [--report-only] [--metrics-dir MDIR] DIR

DIR (written by the clusternet.node.persistence role) holds:
  state.json      {"calls": [{"module": NAME, "args": {...}}, ...]}: the arguments the
                  roles passed to the collection's modules on the last converge;
  plugins.bundle  the collection's plugins/module_utils/*.py and the modules those
                  calls name, each file after a line "#### clusternet-node file PATH LINES".

Each call runs the module's own main() from the bundle, with a stand-in for
AnsibleModule that takes its defaults from the module's own argument_spec: the same code
and the same arguments as the converge, so a restore cannot drift from it. The stand-in
is this file's own, not the tests' in-process runner (tests/inprocess.py, which feeds
ansible-core's AnsibleModule): it runs at boot on nodes where Ansible is not installed,
only Debian's python3 and pyroute2. Only the objects those calls own are touched. VIP
routes are sourced from node IPs, which may come up late (DHCP): vip calls run last,
once their node IPs are present and not tentative (compared as addresses, as the vip
module parses them, not as text), or fail after the timeout with a message naming the
missing addresses.

Root runs what DIR holds, so DIR (and each directory above it) and its files must be
root's and writable by their owner alone (a directory above may be sticky), and DIR and
its files must not be symbolic links: otherwise the runner logs why and exits 1 having
run nothing. Files of the user running it are trusted too, as the host lock trusts them
(plugins/module_utils/lock.py): root still requires root's, and another user (the unit
tests, unprivileged) runs only what it or root could have written anyway. state.json is checked whole before anything runs: if it is not a list of calls
nothing runs; a call that is malformed (not a mapping, a module the bundle lacks, args
missing or not a mapping) is reported and skipped, and every other call is attempted.
Exit status 0 when every call succeeded, 1 otherwise.

--reconcile (the clusternet-node-reconcile timer) runs every call in check mode with
diff, logs one line per drifted object (module, family, what differs: missing, extra or
different, and the object) read from the module's own check-mode result, then, unless
--report-only, runs for real the calls that would change. Each module run takes the host
lock and touches only what its call owns, as at boot. It writes MDIR/clusternet_node.prom
for node_exporter's textfile collector (atomically: a temporary file beside it, renamed),
with the repair and failure counters kept across runs in DIR/reconcile.json. Drift is not
a failure: the exit status is 1 only when a call failed or nothing could run.
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
FILES = ('restore.py', 'state.json', 'plugins.bundle', 'reconcile.json')
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


# ---- the state directory: root's (or ours) alone, or nothing runs ----

def _owners():
    return (0, os.geteuid())


def _check_owner_and_mode(what, st, sticky_ok=False):
    if st.st_uid not in _owners():
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
    modes = {'check_mode': False, 'diff': False}  # the call's --check and --diff, set by run_call

    def __init__(self, argument_spec, supports_check_mode=False, **_kwargs):
        self.argument_spec = argument_spec
        self.check_mode = self.modes['check_mode']
        self._diff = self.modes['diff']
        self.warnings = []
        self._tmpdir = None
        try:
            self.params = AnsibleModule.params = validate(argument_spec, self.args)
        except ValueError as exc:
            self.fail_json(msg=str(exc))
        if self.check_mode and not supports_check_mode:
            self.exit_json(skipped=True, msg='remote module does not support check mode')

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


def run_call(call, check_mode=False, diff=False):
    """Run one module's main() with the call's arguments; its result (failed: true on failure)."""
    AnsibleModule.args, AnsibleModule.params = call['args'], {}
    AnsibleModule.modes = {'check_mode': check_mode, 'diff': diff}
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
        AnsibleModule.modes = {'check_mode': False, 'diff': False}
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


def summary(call, result, changed='restored (changed)', unchanged='already in place'):
    params = dict(call['args'], **AnsibleModule.params)  # with the module's defaults (interface, chain)
    # masquerade's chain option means nothing on nftables: name the table the module ran on there.
    chain = 'table clusternet' if result.get('backend') == 'nftables' else params.get('chain')
    what = params.get('name') or params.get('interface') or chain or ''
    head = '%s%s' % (call['module'], ' ' + what if what else '')
    if result.get('failed'):
        return '%s: FAILED: %s' % (head, result.get('msg'))
    return '%s: %s' % (head, changed if result.get('changed') else unchanged)


def node_ips_of(call, families):
    """The vip call's node IPs as the vip module parses them (192.0.2.11/32 is 192.0.2.11,
    upper-case IPv6 is the same address); None when they do not parse: the module refuses them."""
    try:
        return [families.parse_unicast(value, 'node IP') for value in _convert('list', call['args'].get('node_ips') or [], 'node_ips')]
    except ValueError:
        return None


def load(directory, log):
    """(texts, calls, invalid, families module) from DIR, the bundle installed; calls is None
    when nothing is persisted yet."""
    texts = read_state_dir(directory)
    if texts['state.json'] is None:
        log('nothing persisted yet in %s: no converge has succeeded on this node' % directory)
        return texts, None, [], None
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
    install(files)
    return texts, calls, invalid, importlib.import_module(COLLECTION + '.plugins.module_utils.families')


def restore(directory, node_ip_timeout, log=print):
    _texts, calls, invalid, families = load(directory, log)
    if calls is None:
        return True
    ok = not invalid

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


# ---- reconcile: drift from each module's check-mode result ----

FAMILY_NAMES = ('ipv4', 'ipv6')
METRICS_FILE = 'clusternet_node.prom'
COUNTERS_FILE = 'reconcile.json'


def diff_sections(text):
    """{family: [lines]} of an iptables module's diff text ('# ipv4' then its lines, ...)."""
    sections, family = {}, None
    for line in (text or '').splitlines():
        if line.startswith('# ') and line[2:] in FAMILY_NAMES:
            family = line[2:]
            sections[family] = []
        elif family and line:
            sections[family].append(line)
    return sections


def _changed_lines(family, before, after, what):
    """missing / extra lines between one family's before and after, in their order."""
    return ([(family, 'missing', '%s %s' % (what, line)) for line in after if line not in before]
            + [(family, 'extra', '%s %s' % (what, line)) for line in before if line not in after])


def _ipset_drift(result, diff):
    out = []
    before = set(diff.get('before', '').splitlines())
    for family in FAMILY_NAMES:
        state = result.get(family) or {}
        for label in state.get('added', []):
            # a key already there that only gains or loses its nomatch flag
            key = label[:-len(' nomatch')] if label.endswith(' nomatch') else label
            held = {'add %s %s' % (state['name'], key), 'add %s %s nomatch' % (state['name'], key)} & before
            out.append((family, 'different' if held else 'missing', 'set %s entry %s' % (state['name'], label)))
        out += [(family, 'extra', 'set %s entry %s' % (state['name'], label)) for label in state.get('removed', [])]
    return out


def _vip_family(address):
    return 'ipv6' if ':' in address else 'ipv4'


def _vip_drift(result, diff):
    out = []
    interface = result.get('interface') or {}
    name = interface.get('name', '')
    for key, what in (('created', 'missing'), ('adopted', 'different'), ('set_up', 'different')):
        if interface.get(key):
            out.append(('link', what, 'interface %s%s' % (name, {'adopted': ' not marked as ours', 'set_up': ' down'}.get(key, ''))))
    for family in FAMILY_NAMES:
        state = result.get(family) or {}
        out += [(family, 'missing', 'address %s' % each) for each in state.get('added', [])]
        out += [(family, 'extra', 'address %s' % each) for each in state.get('removed', [])]
        out += [(family, 'missing', 'route %s' % each) for each in state.get('routes_added', [])]
        out += [(family, 'extra', 'route %s' % each) for each in state.get('routes_removed', [])]
    return out


# The nftables backend's before view starts with what its reader found different from what the
# module writes, one '# drift: ' line per object (nft.parse_table): 'missing rule CHAIN' when a
# chain's rules were flushed, 'unexpected set X', 'rule CHAIN differs'.
NFT_DRIFT = '# drift: '
NFT_DRIFT_KINDS = (('missing ', 'missing', ''), ('unexpected ', 'extra', ''), ('', 'different', ' differs'))


def _nft_drift(family, text):
    """(family, missing|extra|different, object) of one '# drift: ' line's text."""
    for prefix, kind, suffix in NFT_DRIFT_KINDS:
        if text.startswith(prefix) and text.endswith(suffix):
            return (family, kind, text[len(prefix):len(text) - len(suffix)])
    return (family, 'different', text)


def _nat_drift(_result, diff):
    before, after = diff_sections(diff.get('before')), diff_sections(diff.get('after'))
    out = []
    for family in FAMILY_NAMES:
        found = [line for line in before.get(family, []) if line.startswith(NFT_DRIFT)]
        out += [_nft_drift(family, line[len(NFT_DRIFT):]) for line in found]
        out += _changed_lines(family, [line for line in before.get(family, []) if line not in found], after.get(family, []), 'rule')
    return out


DRIFT = {'ipset': _ipset_drift, 'vip': _vip_drift, 'masquerade': _nat_drift, 'fip': _nat_drift}


def drift_of(module, result):
    """[(family, missing|extra|different, object)] a check-mode result with diff says would change."""
    diff = result.get('diff') or {}
    return DRIFT[module](result, diff[0] if isinstance(diff, list) else diff)


def managed_of(module, result):
    """{family: number of objects} the call owns once in sync: its check-mode diff's after."""
    diff = result.get('diff') or {}
    after = (diff[0] if isinstance(diff, list) else diff).get('after', '')
    counts = dict((family, 0) for family in FAMILY_NAMES)
    if module in ('masquerade', 'fip'):
        for family, lines in diff_sections(after).items():
            counts[family] = len(lines)
    elif module == 'ipset':
        names = dict(((result.get(family) or {}).get('name'), family) for family in FAMILY_NAMES)
        for line in after.splitlines():
            words = line.split()
            if len(words) > 2 and words[0] == 'add' and words[1] in names:
                counts[names[words[1]]] += 1
    else:  # vip: each address, then its routes
        family = None
        for line in after.splitlines():
            if line.startswith('address '):
                family = _vip_family(line.split()[1])
            if family and (line.startswith('address ') or line.startswith('  route ')):
                counts[family] += 1
    return counts


def read_counters(text, log):
    """{'repairs': {(module, family): n}, 'failures': {module: n}} from reconcile.json; zero when absent or unreadable."""
    counters = {'repairs': {}, 'failures': {}}
    if text is None:
        return counters
    try:
        document = json.loads(text)
        counters['repairs'] = dict(((entry['module'], entry['family']), int(entry['value'])) for entry in document['repairs'])
        counters['failures'] = dict((entry['module'], int(entry['value'])) for entry in document['failures'])
    except (ValueError, KeyError, TypeError) as exc:
        log('%s unreadable (%s): the counters start again from zero' % (COUNTERS_FILE, cut(str(exc))))
        return {'repairs': {}, 'failures': {}}
    return counters


def write_atomically(directory, name, text, mode):
    """name in directory replaced in one rename by a file holding text: a reader sees the old or the new file whole."""
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % name, dir=directory)  # not *.prom: node_exporter skips it
    try:
        with os.fdopen(fd, 'w') as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, os.path.join(directory, name))
    except BaseException:
        os.unlink(tmp)
        raise


def _label(value):
    return str(value).replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')


def render_metrics(now, ok, repair, drifted, managed, counters):
    """The text exposition format node_exporter's textfile collector reads."""
    families = [
        ('clusternet_node_reconcile_last_run_timestamp_seconds', 'gauge',
         'Unix time the last reconcile of the converged host state ended.', [({}, now)]),
        ('clusternet_node_reconcile_success', 'gauge',
         '1 when every call of the last reconcile ran (drift found is not a failure), 0 otherwise.', [({}, int(ok))]),
        ('clusternet_node_reconcile_repair_enabled', 'gauge',
         '1 when the reconcile repairs drift, 0 when it only reports it.', [({}, int(repair))]),
        ('clusternet_node_drifted_objects', 'gauge',
         'Objects the last reconcile found missing, extra or different, per module and family.',
         [({'module': module, 'family': family}, value) for (module, family), value in sorted(drifted.items())]),
        ('clusternet_node_managed_objects', 'gauge',
         'Objects the persisted calls own once in sync, per module and family.',
         [({'module': module, 'family': family}, value) for (module, family), value in sorted(managed.items())]),
        ('clusternet_node_reconcile_repairs_total', 'counter',
         'Drifted objects a reconcile repaired, per module and family.',
         [({'module': module, 'family': family}, value) for (module, family), value in sorted(counters['repairs'].items())]),
        ('clusternet_node_reconcile_failures_total', 'counter',
         'Calls that failed in a reconcile (check or repair), per module.',
         [({'module': module}, value) for module, value in sorted(counters['failures'].items())]),
    ]
    lines = []
    for name, kind, text, samples in families:
        lines += ['# HELP %s %s' % (name, text), '# TYPE %s %s' % (name, kind)]
        for labels, value in samples:
            rendered = ','.join('%s="%s"' % (key, _label(labels[key])) for key in sorted(labels))
            lines.append('%s%s %s' % (name, '{%s}' % rendered if rendered else '', value))
    return '\n'.join(lines) + '\n'


def reconcile(directory, repair, log=print):
    """Check every call, log its drift, repair it unless report-only; the counters saved.
    Returns (ok, drifted {(module, family): n}, managed {(module, family): n}, counters)."""
    texts, calls, invalid, _families = load(directory, log)
    counters = read_counters(texts.get(COUNTERS_FILE), log)
    ok = not invalid
    drifted, managed = {}, {}
    for call in calls or []:
        module = call['module']
        result = run_call(call, check_mode=True, diff=True)
        if not result.get('failed'):
            for family, count in managed_of(module, result).items():
                managed[(module, family)] = managed.get((module, family), 0) + count
            found = drift_of(module, result)
            for family, what, thing in found:
                drifted[(module, family)] = drifted.get((module, family), 0) + 1
                log('drift: module=%s family=%s %s: %s' % (module, family, what, thing))
            if result.get('changed') and not found:
                log('drift: module=%s would change outside the objects it reports (see its warnings)' % module)
            if result.get('changed') and repair:
                result = run_call(call)
                if not result.get('failed'):
                    for family in set(family for family, _what, _thing in found):
                        key = (module, family)
                        counters['repairs'][key] = counters['repairs'].get(key, 0) + sum(1 for each in found if each[0] == family)
        for warning in result.get('warnings') or []:
            log('%s: warning: %s' % (module, warning))
        if result.get('failed'):
            counters['failures'][module] = counters['failures'].get(module, 0) + 1
            ok = False
        log(summary(call, result, 'repaired' if repair else 'drifted, not repaired (report only)', 'in sync'))
    if calls is not None:
        document = {'repairs': [{'module': m, 'family': f, 'value': v} for (m, f), v in sorted(counters['repairs'].items())],
                    'failures': [{'module': m, 'value': v} for m, v in sorted(counters['failures'].items())]}
        write_atomically(directory, COUNTERS_FILE, json.dumps(document, indent=1) + '\n', 0o600)
    return ok, drifted, managed, counters


def run_reconcile(directory, repair, metrics_dir, log, clock=time.time):
    """reconcile(), then the metrics file, written whatever happened; the exit status."""
    try:
        ok, drifted, managed, counters = reconcile(directory, repair, log=log)
    except Refused as exc:
        log('refusing to reconcile from %s, nothing was run: %s' % (directory, exc))
        ok, drifted, managed, counters = False, {}, {}, {'repairs': {}, 'failures': {}}
    if metrics_dir:
        try:
            os.makedirs(metrics_dir, mode=0o755, exist_ok=True)
            write_atomically(metrics_dir, METRICS_FILE, render_metrics(clock(), ok, repair, drifted, managed, counters), 0o644)
        except OSError as exc:
            log('cannot write %s/%s: %s' % (metrics_dir, METRICS_FILE, exc))
            ok = False
    return 0 if ok else 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--node-ip-timeout', type=int, default=60, help='seconds to wait for the VIPs\' node IPs (default 60)')
    parser.add_argument('--reconcile', action='store_true', help='check every call, log and repair its drift, write metrics')
    parser.add_argument('--report-only', action='store_true', help='with --reconcile: log drift, change nothing')
    parser.add_argument('--metrics-dir', default='', help='with --reconcile: where clusternet_node.prom is written (none: no file)')
    parser.add_argument('directory')
    args = parser.parse_args(argv)

    def log(line):
        print(line, flush=True)  # stdout is the unit's journal

    if args.reconcile:
        return run_reconcile(args.directory, not args.report_only, args.metrics_dir, log)
    if args.report_only or args.metrics_dir:
        parser.error('--report-only and --metrics-dir go with --reconcile')
    try:
        ok = restore(args.directory, args.node_ip_timeout, log=log)
    except Refused as exc:
        log('refusing to restore from %s, nothing was run: %s' % (args.directory, exc))
        return 1
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())

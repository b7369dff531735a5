# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Names of kernel objects, checked the way the kernel checks them.

Pure functions. Every error is a ValueError naming the offending value, so a module
fails with it before the first write instead of half-way through a batch.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

IFNAMSIZ = 16  # bytes, with the terminating NUL


def check_interface_name(name, what='interface name'):
    """The kernel's dev_valid_name(): 1 to 15 bytes (UTF-8, not characters), not "." or
    "..", no "/", ":", whitespace or NUL; no "@", which ip prints between a link and its
    peer (x@y reads as link x of peer y); and no "%", which the kernel takes as a template
    when it creates a link (kube%d becomes kube0), so no link has that name. Returns the name."""
    text = name if isinstance(name, str) else ''
    size = len(text.encode('utf-8', 'surrogatepass'))
    if not 0 < size < IFNAMSIZ or text in ('.', '..') or any(c in '/:@%\0' or c.isspace() for c in text):
        raise ValueError('invalid %s %r: expected 1 to %d bytes, not "." or "..", without "/", ":", "@", "%%" or whitespace'
                         % (what, name, IFNAMSIZ - 1))
    return text


IPSET_MAXNAMELEN = 32  # bytes, with the terminating NUL


def check_set_name(name, what='set name'):
    """An ipset set name that reaches ipset's parsers as itself. Returns the name.

    ipset 7 has no "--": it takes any argument that is one of its options (-n, -exist,
    -f FILE, -o MODE, ... with one or two dashes) as that option, wherever it stands, on
    the command line and on every `ipset restore` line; restore splits a line at
    whitespace and drops double quotes; list:set members and element syntax split at
    commas. So: 1 to 31 printable ASCII characters (IPSET_MAXNAMELEN 32 with the NUL),
    no space, '"' or ',', not starting with '-'.
    """
    text = name if isinstance(name, str) else ''
    bad = sorted(set(c for c in text if not '!' <= c <= '~' or c in '",'))
    if any(c.isspace() for c in bad):
        raise ValueError('%s %r contains whitespace: ipset restore splits its lines at whitespace' % (what, name))
    if bad:
        raise ValueError('%s %r contains %s: a set name is printable ASCII without \'"\' (ipset restore drops it '
                         'as a quote) and \',\' (list:set members split at it)' % (what, name, ', '.join(repr(c) for c in bad)))
    if not 0 < len(text) < IPSET_MAXNAMELEN:
        raise ValueError('%s %r is %d characters; ipset allows 1 to %d' % (what, name, len(text), IPSET_MAXNAMELEN - 1))
    if text.startswith('-'):
        raise ValueError('%s %r starts with "-": ipset would read it as an option (-n, -exist, -f FILE, ...), '
                         'on its command line and in restore input alike' % (what, name))
    return text

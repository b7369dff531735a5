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
    "..", no "/", ":", whitespace or NUL. Returns the name."""
    text = name if isinstance(name, str) else ''
    size = len(text.encode('utf-8', 'surrogatepass'))
    if not 0 < size < IFNAMSIZ or text in ('.', '..') or any(c in '/:\0' or c.isspace() for c in text):
        raise ValueError('invalid %s %r: expected 1 to %d bytes, not "." or "..", without "/", ":" or whitespace'
                         % (what, name, IFNAMSIZ - 1))
    return text

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import INTERPRETERS, Netns, link_collection  # noqa: E402

link_collection()


@pytest.fixture
def netns():
    """A fresh network namespace, deleted after the test."""
    ns = Netns()
    yield ns
    ns.delete()


@pytest.fixture
def netns_factory():
    """Make as many namespaces as a topology needs; all are deleted after the test."""
    made = []

    def make():
        ns = Netns()
        made.append(ns)
        return ns

    yield make
    for ns in made:
        ns.delete()


@pytest.fixture(params=sorted(INTERPRETERS), ids=sorted(INTERPRETERS))
def python(request):
    """The managed node's interpreter: each end of the supported pyroute2 range."""
    path = INTERPRETERS[request.param]
    if not os.path.exists(path):
        pytest.fail('interpreter %s for %s is missing: make test installs it' % (path, request.param))
    return path

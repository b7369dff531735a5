import os
import sys
import tempfile

# Importing ansible.module_utils loads the controller's config, which creates ~/.ansible/tmp:
# unit tests must not need a writable home (nobody's is /nonexistent).
os.environ.setdefault('ANSIBLE_LOCAL_TEMP', tempfile.gettempdir())

# Make `ansible_collections.clusternet.node` importable for pure unit tests.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'build', 'collections'))
# And tests/unit itself, for fakes.py.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

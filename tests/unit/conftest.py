import os
import sys

# Make `ansible_collections.clusternet.node` importable for pure unit tests.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'build', 'collections'))
# And tests/unit itself, for fakes.py.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

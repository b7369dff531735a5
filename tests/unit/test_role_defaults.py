"""One source for each default: a thin role's variable that feeds a module option has the
module's documented default (which sanity's validate-modules ties to the argument spec) in
both the role's defaults/main.yml and its meta/argument_specs.yml."""

import importlib
import os
import re

import pytest
import yaml

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')
ROLES = ('ipsets', 'service_vips', 'masquerade', 'floating_ips')
VARIABLE = re.compile(r'^\{\{ (\w+) \}\}$')


def load(*parts):
    with open(os.path.join(REPO, *parts)) as handle:
        return yaml.safe_load(handle)


def module_options(name):
    """The module's documented options, with those of the collection's doc fragments it extends."""
    module = importlib.import_module('ansible_collections.clusternet.node.plugins.modules.' + name)
    doc = yaml.safe_load(module.DOCUMENTATION)
    options = {}
    for fragment in doc.get('extends_documentation_fragment', []):
        plugin = importlib.import_module('ansible_collections.clusternet.node.plugins.doc_fragments.' + fragment.split('.')[-1])
        options.update(yaml.safe_load(plugin.ModuleDocFragment.DOCUMENTATION).get('options') or {})
    options.update(doc['options'])
    return options


def fed_options(role):
    """(module, {option: role variable}) of the role's module task, for options given as one bare variable."""
    (task,) = load('roles', role, 'tasks', 'main.yml')
    (action,) = [key for key in task if key.startswith('clusternet.node.')]
    fed = dict((option, VARIABLE.match(value).group(1)) for option, value in task[action].items()
               if isinstance(value, str) and VARIABLE.match(value))
    return action.split('.')[-1], fed


@pytest.mark.parametrize('role', ROLES)
def test_a_role_variable_has_its_module_options_default_in_both_places(role):
    module, fed = fed_options(role)
    options = module_options(module)
    defaults = load('roles', role, 'defaults', 'main.yml')
    specs = load('roles', role, 'meta', 'argument_specs.yml')['argument_specs']['main']['options']
    checked = 0
    for option, variable in fed.items():
        assert variable in defaults and variable in specs, '%s: %s has no default or no spec' % (role, variable)
        assert defaults[variable] == specs[variable].get('default'), '%s: %s' % (role, variable)
        if 'default' in options[option]:
            assert defaults[variable] == options[option]['default'], '%s: %s vs %s option %s' % (role, variable, module, option)
            checked += 1
    assert checked, '%s: no option with a module default was compared' % role


@pytest.mark.parametrize('role', ('node_network', 'persistence'))
def test_every_role_default_is_the_argument_specs_default(role):
    defaults = load('roles', role, 'defaults', 'main.yml')
    specs = load('roles', role, 'meta', 'argument_specs.yml')['argument_specs']['main']['options']
    for variable, value in defaults.items():
        assert variable in specs, '%s: %s is not in the argument spec' % (role, variable)
        assert specs[variable].get('default') == value, '%s: %s' % (role, variable)

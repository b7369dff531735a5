# Sphinx configuration of the clusternet.node docsite (`make docs`, docs/build.py).
# Started from `antsibull-docs sphinx-init` 2.28.0; changed so that the build needs no
# network: no intersphinx (it downloads inventories), and the few Ansible docsite labels
# the generated pages link to are resolved to fixed URLs by a missing-reference handler.

from docutils import nodes

project = 'clusternet.node'
copyright = 'clusternet maintainers'  # pylint: disable=redefined-builtin
title = 'clusternet.node'
html_short_title = 'clusternet.node'

# sphinx.ext.graphviz renders the guide's diagrams from their text at build time with Debian's
# graphviz (`dot`, make apt): no image is checked in. SVG, so the diagram's labels stay text.
extensions = ['sphinx_antsibull_ext', 'sphinx.ext.graphviz']
graphviz_output_format = 'svg'

pygments_style = 'ansible'
highlight_language = 'YAML+Jinja'

html_theme = 'sphinx_ansible_theme'
html_show_sphinx = False
html_use_smartypants = True
html_use_modindex = False
html_use_index = False
html_copy_source = False
display_version = False

default_role = 'any'
# With sphinx-build -W: any reference that resolves nowhere fails the build.
nitpicky = True

ANSIBLE_DOCS = 'https://docs.ansible.com/ansible/latest/'
# Labels of the Ansible docsite that antsibull-docs' templates refer to: label -> (page, title).
ANSIBLE_DOCS_LABELS = {
    'common_return_values': ('reference_appendices/common_return_values.html', 'Return Values'),
    'ansible_configuration_settings': ('reference_appendices/config.html', 'Ansible Configuration Settings'),
    'action_plugins': ('plugins/action.html', 'Action plugins'),
}


def ansible_docs_reference(app, env, node, contnode):  # pylint: disable=unused-argument
    """Resolve :ref: to a known Ansible docsite label as an external link; others stay unresolved."""
    if node.get('refdomain') != 'std' or node.get('reftype') != 'ref' or node['reftarget'] not in ANSIBLE_DOCS_LABELS:
        return None
    page, label_title = ANSIBLE_DOCS_LABELS[node['reftarget']]
    reference = nodes.reference('', '', internal=False, refuri=ANSIBLE_DOCS + page)
    reference += contnode if node.get('refexplicit') else nodes.inline(label_title, label_title)
    return reference


def setup(app):
    app.connect('missing-reference', ansible_docs_reference)

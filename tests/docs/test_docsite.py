"""The HTML docsite as a reader's browser shows it: `make docs`'s build, opened in headless
Chromium. Every documented option and return value (suboptions included) is a visible entry
on its page and nothing else is, the examples are shown, the theme's CSS applies, the page
loads nothing from anywhere but the local server and throws no script error, and each page
leaves a screenshot in build/docs/ that is a real, non-blank picture. Every page of the user
guide (docs/guide) is there under its title, each link inside the docsite resolves to a page
and anchor that exist, and the architecture page shows the diagram Graphviz drew from its text."""

import glob
import json
import os
import struct
import zlib

import gates
import pytest
import yaml
from harness import link_collection

pytestmark = pytest.mark.slow

DOCS_OUT = os.path.join(gates.REPO, 'build', 'docs')  # build/docs/html is the docsite
NODE = 'collections/clusternet/node/'
MODULES = sorted(os.path.basename(path)[:-3] for path in glob.glob(os.path.join(gates.REPO, 'plugins', 'modules', '*.py')))
ROLES = sorted(os.path.basename(os.path.dirname(os.path.dirname(path)))
               for path in glob.glob(os.path.join(gates.REPO, 'roles', '*', 'meta', 'argument_specs.yml')))
FILTERS = sorted(os.path.basename(path)[:-4] for path in glob.glob(os.path.join(gates.REPO, 'plugins', 'filter', '*.yml')))
# page -> (kind, name); kind None is the docsite's index.
PAGES = {'index': (None, None)}
PAGES.update(('%s_module' % name, ('module', name)) for name in MODULES)
PAGES.update(('%s_role' % name, ('role', name)) for name in ROLES)
PAGES.update(('%s_filter' % name, ('filter', name)) for name in FILTERS)
GUIDE = sorted(os.path.basename(path)[:-4] for path in glob.glob(os.path.join(gates.REPO, 'docs', 'guide', '*.rst')))
PAGES.update(('guide/' + name, ('guide', name)) for name in GUIDE)

# What the rendered DOM holds, read in the page after it loaded (scripts run, CSS applied).
FACTS = r"""(() => {
  const shown = el => !!el && el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden';
  const entries = kind => Array.from(document.querySelectorAll('.ansibleOptionAnchor[id^="' + kind + '-"]')).map(anchor => {
    const title = anchor.nextElementSibling;
    return {id: anchor.id.slice(kind.length + 1), name: title ? title.innerText.trim() : '', shown: shown(title)};
  });
  const section = id => { const el = document.getElementById(id); return el ? {shown: shown(el), text: el.innerText} : null; };
  const side = document.querySelector('.wy-nav-side');
  return {
    h1: Array.from((document.querySelector('h1') || {childNodes: []}).childNodes)
      .filter(node => !(node.classList && node.classList.contains('headerlink'))).map(node => node.textContent).join(''),
    parameters: entries('parameter'),
    returns: entries('return'),
    examples: section('examples'),
    links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href.split('#')[0]),
    sidebar: shown(side) ? getComputedStyle(side).position : null,
  };
})()"""


# Every link of the page that stays inside the docsite, fetched from the local server: the page must
# exist and, for a link with a #fragment, hold an element with that id.
LINKS = r"""(async () => {
  const inside = Array.from(new Set(Array.from(document.querySelectorAll('a[href]')).map(a => a.href)
    .filter(href => href.startsWith(location.origin + '/'))));
  const pages = {};
  const broken = [];
  for (const href of inside) {
    const [url, fragment] = href.split('#');
    if (!(url in pages)) {
      const response = await fetch(url);
      pages[url] = response.ok ? new DOMParser().parseFromString(await response.text(), 'text/html') : null;
    }
    if (!pages[url]) broken.push(href + ': no such page');
    else if (fragment && !pages[url].getElementById(decodeURIComponent(fragment))) broken.push(href + ': no such anchor');
  }
  return {checked: inside.length, broken: broken};
})()"""

# The architecture diagram: the SVG sphinx.ext.graphviz embeds, as drawn on the page, and its labels.
DIAGRAM = r"""(() => {
  const shown = el => !!el && el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden';
  return Array.from(document.querySelectorAll('object.graphviz')).map(object => {
    const svg = object.contentDocument && object.contentDocument.querySelector('svg');
    const box = object.getBoundingClientRect();
    return {data: object.getAttribute('data'), shown: shown(object), width: box.width, height: box.height,
            labels: svg ? Array.from(svg.querySelectorAll('text')).map(text => text.textContent.trim()) : null};
  });
})()"""
# Each stage of intent -> node_plan -> node_apply -> module -> engine -> kernel, as the diagram labels it.
DIAGRAM_LABELS = {'intent', 'node_plan filter', 'node_apply action', 'modules', 'ipset', 'vip', 'masquerade', 'fip',
                  'engine (plugins/module_utils)', 'kernel'}


def page_url(base, page):
    if page == 'index':
        return base + 'index.html'
    return base + (page if page.startswith('guide/') else NODE + page) + '.html'


def guide_title(name):
    """The title of docs/guide/NAME.rst: the line over its first '=' underline."""
    with open(os.path.join(gates.REPO, 'docs', 'guide', name + '.rst')) as handle:
        lines = handle.read().splitlines()
    return next(lines[i - 1] for i, line in enumerate(lines) if i and line.startswith('===') and set(line) == {'='})


def paths(spec, children, prefix=''):
    """Every option (or return value) path, nested ones as a/b, as antsibull-docs names their anchors."""
    found = set()
    for name, value in (spec or {}).items():
        found.add(prefix + name)
        for key in children:
            found |= paths((value or {}).get(key), children, prefix + name + '/')
    return found


@pytest.fixture(scope='module')
def ansible_doc():
    """The plugins' docs as ansible-doc reads them from the linked checkout: {(kind, name): doc}."""
    docs = {}
    env = {'ANSIBLE_COLLECTIONS_PATH': link_collection(), 'ANSIBLE_NOCOLOR': '1'}
    for kind, names in (('module', MODULES), ('filter', FILTERS)):
        proc = gates.run([gates.tool('ansible-doc'), '--json', '-t', kind] + ['clusternet.node.' + name for name in names], env=env)
        gates.assert_passes(proc)
        for fqcn, doc in json.loads(proc.stdout).items():
            docs[(kind, fqcn.split('.')[-1])] = doc
    return docs


def expected(kind, name, ansible_doc):
    """(parameter ids, return ids, example task names) the page of this plugin or role must show."""
    if kind == 'role':
        with open(os.path.join(gates.REPO, 'roles', name, 'meta', 'argument_specs.yml')) as handle:
            specs = yaml.safe_load(handle)['argument_specs']
        return {entry + '--' + path for entry, spec in specs.items() for path in paths(spec.get('options'), ('options',))}, set(), []
    doc = ansible_doc[(kind, name)]
    examples = yaml.safe_load(doc['examples'])
    # A filter's examples are variables, not tasks: there the FQCN use is what must show.
    tasks = [task['name'] for task in examples] if kind == 'module' else []
    return paths(doc['doc']['options'], ('suboptions',)), paths(doc['return'], ('contains',)), tasks


# A filter's input and result are titled in words, every other entry by its own name.
TITLES = {'_input': 'Input', '_value': 'Return value'}


def title(anchor):
    """The title an entry shows: the last part of its path ('main--a/b' -> 'b')."""
    name = anchor.split('/')[-1].split('--')[-1]
    return TITLES.get(name, name)


def png_is_a_picture(data):
    """A PNG of the viewport's size whose pixel rows are not all the same (a blank page would be)."""
    assert data[:8] == b'\x89PNG\r\n\x1a\n', 'not a PNG'
    width, height, depth, colour = struct.unpack('>IIBB', data[16:26])
    chunks, pos = [], 8
    while pos < len(data):
        length, kind = struct.unpack('>I4s', data[pos:pos + 8])
        if kind == b'IDAT':
            chunks.append(data[pos + 8:pos + 8 + length])
        pos += 12 + length
    pixels = zlib.decompress(b''.join(chunks))
    stride = 1 + width * {2: 3, 6: 4}[colour] * depth // 8
    rows = {pixels[row * stride + 1:(row + 1) * stride] for row in range(height)}
    return (width, height), len(rows)


def test_pages_cover_what_the_task_names():
    assert {'index', 'ipset_module', 'vip_module', 'masquerade_module', 'fip_module', 'node_network_role', 'ipsets_role',
            'service_vips_role', 'masquerade_role', 'floating_ips_role', 'node_state_filter'} <= set(PAGES)
    assert {'guide/' + name for name in ('architecture', 'ownership', 'persistence', 'fleets', 'lab', 'troubleshooting',
                                         'development', 'execution_environment')} <= set(PAGES)


@pytest.mark.parametrize('page', sorted(PAGES))
def test_page_in_chromium(page, served, browser, ansible_doc):
    url = page_url(served, page)
    events = browser.load(url)
    facts = browser.evaluate(FACTS)

    # Self-contained: every resource came from the local server and loaded, no script failed.
    requested = [event['params']['request']['url'] for event in events if event.get('method') == 'Network.requestWillBeSent']
    assert url in requested
    assert [req for req in requested if not req.startswith(served) and not req.startswith('data:')] == []
    assert [(event['params']['response']['url'], event['params']['response']['status']) for event in events
            if event.get('method') == 'Network.responseReceived' and event['params']['response']['status'] >= 400] == []
    assert [event['params'] for event in events if event.get('method') == 'Network.loadingFailed'] == []
    assert [event['params']['exceptionDetails'] for event in events if event.get('method') == 'Runtime.exceptionThrown'] == []
    assert facts['sidebar'] == 'fixed', 'the theme\'s CSS did not apply (navigation sidebar: %r)' % facts['sidebar']

    kind, name = PAGES[page]
    if kind in (None, 'guide'):
        links = browser.evaluate(LINKS)
        assert links['checked'] > 0, 'no link inside the docsite found'
        assert links['broken'] == [], 'links that do not resolve: %s' % links['broken']
    if kind is None:
        assert facts['h1'].strip() == 'clusternet.node'
        linked = set(facts['links'])
        assert {page_url(served, other) for other in PAGES if other != 'index'} - linked == set(), 'index does not link every page'
    elif kind == 'guide':
        assert facts['h1'].strip() == guide_title(name)
        if name == 'architecture':
            diagrams = browser.evaluate(DIAGRAM)
            assert len(diagrams) == 1, diagrams
            diagram = diagrams[0]
            assert diagram['shown'] and diagram['width'] > 300 and diagram['height'] > 100, diagram
            assert diagram['data'].endswith('.svg'), diagram
            assert diagram['labels'] is not None, 'the diagram\'s SVG did not load into the page'
            labels = {' '.join(label.split()) for label in diagram['labels']}
            assert DIAGRAM_LABELS - labels == set(), 'stages missing from the diagram: %s (it shows %s)' % (
                sorted(DIAGRAM_LABELS - labels), sorted(labels))
    else:
        assert facts['h1'].startswith('clusternet.node.%s %s' % (name, kind)), facts['h1']
        parameters, returns, tasks = expected(kind, name, ansible_doc)
        assert parameters, 'nothing documented to look for'
        for entries, wanted, what in ((facts['parameters'], parameters, 'options'), (facts['returns'], returns, 'return values')):
            shown = {entry['id'] for entry in entries if entry['shown'] and entry['name'] == title(entry['id'])}
            assert shown == wanted, '%s on the page: %s missing, %s not documented' % (
                what, sorted(wanted - shown), sorted(shown - wanted))
        if kind == 'role':
            assert facts['examples'] is None
        else:
            assert facts['examples'] and facts['examples']['shown'], 'no Examples section shown'
            assert 'clusternet.node.' + name in facts['examples']['text']
            assert [task for task in tasks if task not in facts['examples']['text']] == []

    shot = os.path.join(DOCS_OUT, 'screenshot-%s.png' % page.replace('/', '-'))
    size, distinct_rows = png_is_a_picture(browser.screenshot(shot))
    assert size == (1280, 1600)
    assert distinct_rows > 100, 'the screenshot is (nearly) blank: %d distinct pixel rows' % distinct_rows

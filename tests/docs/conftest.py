"""The docsite, built once by docs/build.py (what `make docs` runs), served from a local
http.server on 127.0.0.1, and one headless Chromium (Debian's) driven over the DevTools
protocol on a pipe (--remote-debugging-pipe: no websocket client, no browser download)."""

import base64
import fcntl
import functools
import http.server
import json
import os
import select
import subprocess
import sys
import threading
import time

import gates
import pytest

CHROMIUM = '/usr/bin/chromium'
DOCS_OUT = os.path.join(gates.REPO, 'build', 'docs')
HTML = os.path.join(DOCS_OUT, 'html')
# What the brief for this test asks of the browser: no sandbox as root, nothing contacted but the page.
CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                  '--disable-background-networking', '--disable-component-update', '--disable-sync',
                  '--hide-scrollbars', '--remote-debugging-pipe']
TIMEOUT = 60


@pytest.fixture(scope='session')
def docsite():
    """Build the docsite exactly as `make docs` does; the path of its html directory."""
    gates.assert_passes(gates.run([sys.executable, os.path.join(gates.REPO, 'docs', 'build.py')]))
    return HTML


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope='session')
def served(docsite):
    """The docsite's base URL on a local http.server (127.0.0.1, a free port)."""
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_QuietHandler, directory=docsite))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield 'http://127.0.0.1:%d/' % server.server_address[1]
    server.shutdown()
    server.server_close()


class Chromium(object):
    """One headless Chromium with one page; DevTools messages are JSON ended by NUL on fds 3 (in) and 4 (out)."""

    def __init__(self, user_data_dir, log):
        if not os.access(CHROMIUM, os.X_OK):
            pytest.fail('%s is missing: `make apt` installs Debian\'s chromium package' % CHROMIUM)
        to_browser, self._to = os.pipe()
        self._from, from_browser = os.pipe()
        # Above 4, so that placing them on 3 and 4 in the child cannot overwrite one with the other.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_browser, from_browser)]

        def place_fds():
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen([CHROMIUM] + CHROMIUM_FLAGS + ['--user-data-dir=' + user_data_dir, 'about:blank'],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=False,
                                     preexec_fn=place_fds)  # pylint: disable=subprocess-popen-preexec-fn
        for fd in [to_browser, from_browser] + high:
            os.close(fd)
        self._buffer = b''
        self._id = 0
        self.events = []
        target = self.send('Target.createTarget', url='about:blank')['targetId']
        self.session = self.send('Target.attachToTarget', targetId=target, flatten=True)['sessionId']
        for domain in ('Page', 'Network', 'Runtime'):
            self.send(domain + '.enable', session=self.session)
        self.send('Emulation.setDeviceMetricsOverride', session=self.session, width=1280, height=1600,
                  deviceScaleFactor=1, mobile=False)

    def _message(self, deadline):
        while b'\0' not in self._buffer:
            if not select.select([self._from], [], [], max(0, deadline - time.monotonic()))[0]:
                raise AssertionError('chromium did not answer within %d s' % TIMEOUT)
            chunk = os.read(self._from, 1 << 20)
            if not chunk:
                raise AssertionError('chromium exited (%s)' % self.proc.poll())
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b'\0', 1)
        return json.loads(raw)

    def send(self, method, session=None, **params):
        """One DevTools command; its result (events that arrive meanwhile are kept in self.events)."""
        self._id += 1
        message = {'id': self._id, 'method': method, 'params': params}
        if session:
            message['sessionId'] = session
        os.write(self._to, json.dumps(message).encode() + b'\0')
        deadline = time.monotonic() + TIMEOUT
        while True:
            answer = self._message(deadline)
            if answer.get('id') == self._id:
                if 'error' in answer:
                    raise AssertionError('%s failed: %s' % (method, answer['error']))
                return answer['result']
            self.events.append(answer)

    def wait_for(self, method):
        deadline = time.monotonic() + TIMEOUT
        while not any(event.get('method') == method for event in self.events):
            self.events.append(self._message(deadline))

    def load(self, url):
        """Navigate the page to url and wait for its load event; the events of this load."""
        self.events = []
        result = self.send('Page.navigate', session=self.session, url=url)
        assert 'errorText' not in result, '%s: %s' % (url, result['errorText'])
        self.wait_for('Page.loadEventFired')
        return self.events

    def evaluate(self, expression):
        result = self.send('Runtime.evaluate', session=self.session, expression=expression, returnByValue=True,
                           awaitPromise=True)
        assert 'exceptionDetails' not in result, result['exceptionDetails']
        return result['result'].get('value')

    def screenshot(self, path):
        data = base64.b64decode(self.send('Page.captureScreenshot', session=self.session, format='png')['data'])
        with open(path, 'wb') as handle:
            handle.write(data)
        return data

    def close(self):
        try:
            self.send('Browser.close')
        except AssertionError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to)
        os.close(self._from)


@pytest.fixture(scope='session')
def browser(tmp_path_factory):
    """Headless Chromium with a fresh profile; its output goes to build/docs/chromium.log."""
    os.makedirs(DOCS_OUT, exist_ok=True)
    with open(os.path.join(DOCS_OUT, 'chromium.log'), 'w') as log:
        chromium = Chromium(str(tmp_path_factory.mktemp('chromium-profile')), log)
        yield chromium
        chromium.close()

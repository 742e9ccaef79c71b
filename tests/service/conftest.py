"""Fixtures for the service tests (helpers in servicelib.py).

Run with Debian's interpreter:  /usr/bin/python3 -m pytest -q tests/service
PROXY_BIN=/path/to/smtp-tls-proxy selects another build (e.g. a sanitizer build).
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from servicelib import PROXY_BIN, NotifySocket, Proxy, testca, upstream_mod  # noqa: E402,F401
from fixtures import certs, upstream  # noqa: E402,F401  (tests/lib, on the path via servicelib)
from daemon import proxy_factory, sections  # noqa: E402

# This suite's defaults on top of tests/lib/daemon.py's.
DEFAULTS = {"proxy": {"workers": "1", "shutdown_timeout": "5"}}


# ---- fixtures ------------------------------------------------------------------------------

@pytest.fixture
def proxy_config(certs):
    """Factory for the config sections of a proxy in front of Upstream `up`."""

    def make(up=None, proxy=None, upstream=None, log=None):
        return sections(certs, up, DEFAULTS, proxy=proxy, upstream=upstream, log=log)

    return make


@pytest.fixture
def proxy(tmp_path, proxy_config):
    """Factory: proxy(up, start=True, env=None, listen_fd=None, proxy={...}, ...) -> Proxy.

    At teardown every proxy is stopped with SIGTERM and must exit 0, without a sanitizer
    report and without leaving a worker behind."""
    yield from proxy_factory(tmp_path, proxy_config)


@pytest.fixture
def notify(tmp_path):
    """Factory: notify(abstract=False) -> NotifySocket bound in tmp_path (or abstract)."""
    made = []

    def make(abstract=False):
        if abstract:
            path = "@smtp-tls-proxy-test-%d-%d" % (os.getpid(), len(made))
        else:
            path = os.path.join(str(tmp_path), "notify%d.sock" % len(made))
        n = NotifySocket(path)
        made.append(n)
        return n

    yield make
    for n in made:
        print("notify %s: %r" % (n.path, n.texts()[:40]))
        n.close()

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


# ---- fixtures ------------------------------------------------------------------------------

@pytest.fixture
def proxy_config(certs):
    """Factory for the config sections of a proxy in front of Upstream `up`."""

    def make(up=None, proxy=None, upstream=None, log=None):
        s = {
            "proxy": {"listen": "127.0.0.1:0", "hostname": "proxy.test",
                      "allow": "127.0.0.0/8, ::1/128", "timeout": "10", "workers": "1",
                      "shutdown_timeout": "5"},
            "upstream": {"host": "127.0.0.1", "port": str(up.port) if up else "1",
                         "tls": up.mode if up else "starttls", "server_name": "mail.test",
                         "verify": "yes", "ca_file": certs["ca"][0]},
            "log": {"level": "info", "format": "text"},
        }
        for name, over in (("proxy", proxy), ("upstream", upstream), ("log", log)):
            s[name].update(over or {})
        return s

    return make


@pytest.fixture
def proxy(tmp_path, proxy_config):
    """Factory: proxy(up, start=True, env=None, listen_fd=None, proxy={...}, ...) -> Proxy.

    At teardown every proxy is stopped with SIGTERM and must exit 0, without a sanitizer
    report and without leaving a worker behind."""
    if not os.access(PROXY_BIN, os.X_OK):
        pytest.fail("daemon not built: %s (run make, or set PROXY_BIN)" % PROXY_BIN)
    made = []

    def make(up=None, start=True, env=None, listen_fd=None, **sections):
        p = Proxy(str(tmp_path), proxy_config(up, **sections), name="proxy%d" % len(made))
        p.sections = proxy_config(up, **sections)
        made.append(p)
        return p.start(env=env, listen_fd=listen_fd) if start else p

    yield make
    for p in made:
        if p.proc is not None:
            p.stop()
            print("---- %s stderr ----\n%s" % (p.conf, p.stderr()[-6000:]))
            p.assert_clean_exit()


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

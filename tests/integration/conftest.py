"""Fixtures: a test CA, test upstreams and the built daemon, all on loopback and bounded in time.

Run with Debian's interpreter:  /usr/bin/python3 -m pytest -q tests/integration
PROXY_BIN=/path/to/smtp-tls-proxy selects another build (e.g. a sanitizer build).
"""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))

import testca  # noqa: E402
import upstream as upstream_mod  # noqa: E402
from smtpwire import Client  # noqa: E402,F401
from proxylog import CRASH_MARKERS, parse_log_line, render_ini  # noqa: E402,F401
from fixtures import certs, tokens, upstream  # noqa: E402,F401
from daemon import PROXY_BIN, Proxy, free_port, proxy_factory, refusing_port, sections  # noqa: E402,F401

USER, PASSWORD = upstream_mod.DEFAULT_USER, upstream_mod.DEFAULT_PASSWORD
# This suite's defaults on top of tests/lib/daemon.py's.
DEFAULTS = {"proxy": {"max_sessions": "1000", "bare_newline": "normalize"},
            "upstream": {"min_tls": "1.2"}}


def check_config(workdir, text, name="check"):
    """Run `smtp-tls-proxy -t -c FILE`; return (path, CompletedProcess)."""
    path = os.path.join(workdir, name + ".ini")
    with open(path, "w") as f:
        f.write(text)
    p = subprocess.run([PROXY_BIN, "-t", "-c", path], capture_output=True, text=True, timeout=10)
    return path, p


# ---- fixtures -----------------------------------------------------------------------------

@pytest.fixture
def proxy_config(certs):
    """Factory for the config sections of a proxy in front of Upstream `up`; keyword
    arguments name sections (`**{"device scanner": {...}}` adds one)."""

    def make(up=None, **over):
        return sections(certs, up, DEFAULTS, **over)

    return make


@pytest.fixture
def proxy(tmp_path, proxy_config):
    """Factory: proxy(up, proxy={...}, upstream={...}, log={...}) -> started Proxy.

    A key set to None is left out of the file.  At teardown every proxy is stopped with
    SIGTERM and must exit 0 without a sanitizer report."""
    yield from proxy_factory(tmp_path, proxy_config)


@pytest.fixture
def relay(upstream, proxy):
    """The common case: a verified STARTTLS upstream and a proxy in front of it."""
    up = upstream("starttls")
    return up, proxy(up)


def swaks(port, *args, timeout=30):
    """Run swaks against the proxy; return CompletedProcess (text)."""
    cmd = ["swaks", "--server", "127.0.0.1", "--port", str(port), "--timeout", "10",
           "--helo", "device.test", "--from", "device@example.test",
           "--to", "rcpt@example.test"] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)

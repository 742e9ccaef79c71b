"""Fixtures for the end-to-end tests: a private Debian Postfix as upstream,
swaks as the legacy client, and the built proxy in between.

Run as root with Debian's interpreter:  /usr/bin/python3 -m pytest -q tests/e2e
PROXY_BIN=/path/to/smtp-tls-proxy selects another build; E2E_KEEP=1 keeps the
Postfix directory (config, maillog, Maildir) for inspection.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))
sys.path.insert(0, HERE)

import postfix as postfix_mod  # noqa: E402
import testca  # noqa: E402

from daemon import PROXY_BIN, proxy_factory  # noqa: E402,F401


@pytest.fixture(scope="session")
def pki():
    d = tempfile.mkdtemp(prefix="e2e-pki-")
    yield testca.make_ca(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def postfix(pki):
    yield from run_postfix(pki)


def run_postfix(pki, cls=postfix_mod.Postfix):
    """The body of a Postfix fixture: start a private instance of cls (a Postfix subclass
    may change its configuration), yield it, stop it and check nothing is left."""
    problem = postfix_mod.check_prerequisites()
    if problem:
        pytest.fail("end-to-end tests need a real Postfix: " + problem, pytrace=False)
    # Not pytest's tmp_path: that sits below a 0700 directory the postfix
    # user cannot traverse.
    root = tempfile.mkdtemp(prefix="e2e-postfix-")
    pf = cls(root, *pki["good"])
    try:
        pf.start()
        yield pf
    finally:
        if os.environ.get("E2E_KEEP"):
            pf.stop()
            print("\nkept Postfix directory", root)
        else:
            pf.cleanup()
        if pf.pgid is not None:
            left = postfix_mod.live_processes(pf.pgid)
            assert not left, "Postfix processes survived stop: %s" % left


@pytest.fixture
def start_proxy(tmp_path):
    """start_proxy(key=value, ...) -> running Proxy (tests/lib/daemon.py); [upstream] keys,
    None drops one; more=({section: {key: value}}) adds sections such as
    "upstream NAME" / "device NAME". At teardown each must exit 0 with no crash report."""
    def build(up, more=None, **upstream):
        return dict({"proxy": {"listen": "127.0.0.1:0", "hostname": "proxy.test",
                               "allow": "127.0.0.0/8"},
                     "upstream": upstream, "log": {"level": "debug"}}, **(more or {}))

    factory = proxy_factory(tmp_path, build)
    make = next(factory)
    yield lambda **upstream: make(None, **upstream)
    next(factory, None)

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

PROXY_BIN = os.environ.get("PROXY_BIN") or os.path.join(REPO, "build", "smtp-tls-proxy")


@pytest.fixture(scope="session")
def pki():
    d = tempfile.mkdtemp(prefix="e2e-pki-")
    yield testca.make_ca(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def postfix(pki):
    problem = postfix_mod.check_prerequisites()
    if problem:
        pytest.fail("end-to-end tests need a real Postfix: " + problem, pytrace=False)
    # Not pytest's tmp_path: that sits below a 0700 directory the postfix
    # user cannot traverse.
    root = tempfile.mkdtemp(prefix="e2e-postfix-")
    pf = postfix_mod.Postfix(root, *pki["good"])
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


class Proxy:
    """The daemon under test, started from an ini, stopped by the finalizer."""

    def __init__(self, workdir, upstream):
        self.ini = os.path.join(workdir, "proxy.ini")
        lines = ["[proxy]", "listen = 127.0.0.1:0", "hostname = proxy.test",
                 "allow = 127.0.0.0/8", "[upstream]"]
        lines += ["%s = %s" % kv for kv in upstream.items() if kv[1] is not None]
        lines += ["[log]", "level = debug", ""]
        with open(self.ini, "w") as f:
            f.write("\n".join(lines))
        self.lines = []
        self.proc = None
        self.port = None

    def start(self, timeout=10):
        if not os.access(PROXY_BIN, os.X_OK):
            pytest.fail("proxy binary %s not found: build it (make) or set PROXY_BIN"
                        % PROXY_BIN, pytrace=False)
        self.proc = subprocess.Popen([PROXY_BIN, "-c", self.ini], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, errors="replace")
        # A reader thread keeps the stderr pipe drained for the whole test.
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                m = re.search(r"event=proxy\.listen\b.*\baddr=127\.0\.0\.1:(\d+)", line)
                if m:
                    self.port = int(m.group(1))
                    return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError("proxy did not log event=proxy.listen within %ss "
                             "(exit %s):\n%s" % (timeout, self.proc.poll(), self.log()))

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def log(self):
        return "\n".join(self.lines)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.reader.join(5)  # EOF follows the exit; then the pipe can go
        self.proc.stderr.close()


@pytest.fixture
def start_proxy(tmp_path):
    """start_proxy(key=value, ...) -> running Proxy; [upstream] keys, None drops one."""
    started = []

    def start(**upstream):
        p = Proxy(str(tmp_path), upstream)
        started.append(p)
        return p.start()

    yield start
    for p in started:
        p.stop()

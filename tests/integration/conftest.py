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
from smtpwire import Client  # noqa: E402
from proxylog import CRASH_MARKERS, parse_log_line, render_ini  # noqa: E402,F401
from fixtures import certs, upstream  # noqa: E402,F401

PROXY_BIN = os.environ.get("PROXY_BIN") or os.path.join(REPO, "build", "smtp-tls-proxy")
USER, PASSWORD = upstream_mod.DEFAULT_USER, upstream_mod.DEFAULT_PASSWORD


# ---- the daemon ---------------------------------------------------------------------------

class Proxy:
    def __init__(self, workdir, sections, name="proxy"):
        self.conf = os.path.join(workdir, name + ".ini")
        self.errfile = os.path.join(workdir, name + ".stderr")
        with open(self.conf, "w") as f:
            f.write(render_ini(sections))
        self.proc = None
        self.port = None
        self.returncode = None

    def start(self):
        with open(self.errfile, "wb") as err:
            self.proc = subprocess.Popen([PROXY_BIN, "-c", self.conf], stdin=subprocess.DEVNULL,
                                         stdout=err, stderr=err)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            for d in self.log_lines():
                if d.get("event") == "proxy.listen" and "addr" in d:
                    self.port = int(d["addr"].rsplit(":", 1)[1])
                    return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise AssertionError("proxy did not log event=proxy.listen:\n" + self.stderr())

    def stderr(self):
        with open(self.errfile, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log_lines(self):
        return [d for d in map(parse_log_line, self.stderr().splitlines()) if d is not None]

    def events(self, name):
        return [d for d in self.log_lines() if d.get("event") == name]

    def wait_event(self, name, n=1, timeout=10, **match):
        """Wait until n log lines of event `name` (with the given key values) exist; return them."""
        end = time.monotonic() + timeout
        while True:
            got = [d for d in self.events(name)
                   if all(d.get(k) == v for k, v in match.items())]
            if len(got) >= n or time.monotonic() > end:
                return got
            time.sleep(0.02)

    def client(self, timeout=10):
        return Client(self.port, timeout=timeout)

    def stop(self):
        """SIGTERM, wait up to 10 s, then SIGKILL; return the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.returncode = self.proc.returncode
        return self.returncode

    def assert_clean_exit(self):
        rc = self.stop()
        err = self.stderr()
        assert not any(m in err for m in CRASH_MARKERS), "sanitizer/crash report:\n" + err
        assert rc == 0, "proxy exit code %r\n%s" % (rc, err[-4000:])


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
    """Factory for the config sections of a proxy in front of Upstream `up`."""

    def make(up=None, proxy=None, upstream=None, log=None, limits=None):
        s = {
            "proxy": {"listen": "127.0.0.1:0", "hostname": "proxy.test",
                      "allow": "127.0.0.0/8, ::1/128", "max_sessions": "1000",
                      "timeout": "10", "bare_newline": "normalize"},
            "upstream": {"host": "127.0.0.1", "port": str(up.port) if up else "1",
                         "tls": up.mode if up else "starttls", "server_name": "mail.test",
                         "verify": "yes", "ca_file": certs["ca"][0], "min_tls": "1.2"},
            "log": {"level": "info", "format": "text"},
            "limits": {},
        }
        for name, over in (("proxy", proxy), ("upstream", upstream), ("log", log),
                           ("limits", limits)):
            s[name].update(over or {})
        return s

    return make


@pytest.fixture
def proxy(tmp_path, proxy_config):
    """Factory: proxy(up, proxy={...}, upstream={...}, log={...}) -> started Proxy.

    A key set to None is left out of the file.  At teardown every proxy is stopped with
    SIGTERM and must exit 0 without a sanitizer report."""
    if not os.access(PROXY_BIN, os.X_OK):
        pytest.fail("daemon not built: %s (run make, or set PROXY_BIN)" % PROXY_BIN)
    made = []

    def make(up=None, start=True, **sections):
        p = Proxy(str(tmp_path), proxy_config(up, **sections), name="proxy%d" % len(made))
        made.append(p)
        return p.start() if start else p

    yield make
    for p in made:
        if p.proc is not None:
            p.stop()
            print("---- %s stderr ----\n%s" % (p.conf, p.stderr()[-6000:]))
            p.assert_clean_exit()


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

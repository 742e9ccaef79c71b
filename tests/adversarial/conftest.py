"""Fixtures of the adversarial suite.

Built on tests/integration/conftest.py (its Proxy class, log parser, test CA and upstream), with:
  - every proxy's whole stderr and every byte any client received recorded suite-wide, and a
    session-finish check that fails the run if the test password or any base64 form of it
    shows up anywhere in them (promise 3);
  - proxies that wait for all their listeners and know their worker pids.

Run:  /usr/bin/python3 -m pytest -q tests/adversarial       (PROXY_BIN selects another build)
"""
import os
import signal

import pytest

import adv
from adv import Proxy, ic, record_log, sections

# The shared fixtures (tests/lib/fixtures.py): the session-scoped test CA and test upstreams.
certs, upstream = ic.certs, ic.upstream

# Both suites' conftest files are module "conftest": when pytest runs them together, the
# integration tests may get this one from `from conftest import ...`; give them their names.
PASSWORD, USER, PROXY_BIN = ic.PASSWORD, ic.USER, ic.PROXY_BIN
swaks, check_config, render_ini = ic.swaks, ic.check_config, ic.render_ini


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than 10 s (named so in the test)")


@pytest.fixture
def proxy(tmp_path, certs):
    """Factory: proxy(up, proxy={...}, upstream={...}, limits={...}, log={...}) -> Proxy.

    Logs at debug level by default (so every line the proxy can write is checked for
    credentials). At teardown: SIGTERM, exit 0, no sanitizer report, stderr recorded."""
    if not os.access(adv.PROXY_BIN, os.X_OK):
        pytest.fail("daemon not built: %s (run make, or set PROXY_BIN)" % adv.PROXY_BIN)
    made = []

    def make(up=None, start=True, popen_kw=None, **over):
        s = sections(certs, up, **over)
        p = Proxy(str(tmp_path), s, name="proxy%d" % len(made))
        p.workers = s["proxy"].get("workers", "1")
        if popen_kw:
            p.popen_kw = popen_kw
        made.append(p)
        return p.start() if start else p

    yield make
    for p in made:
        if p.proc is not None:
            p.stop()
            text = p.stderr()
            record_log(text)
            print("---- %s stderr ----\n%s" % (p.conf, text[-6000:]))
            assert not any(m in text for m in adv.CRASH_MARKERS), "crash report:\n" + text
            assert p.returncode == 0, "proxy exit code %r\n%s" % (p.returncode, text[-3000:])


def pytest_sessionfinish(session, exitstatus):
    """Promise 3, suite-wide: no credential in any log line or any reply of the whole run."""
    hits = adv.find_secrets(adv.RECORD["logs"] + adv.RECORD["client"])
    if hits:
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        msg = "CREDENTIAL LEAK: %d occurrence(s), e.g. %r" % (len(hits), hits[:3])
        if tr is not None:
            tr.write_line(msg, red=True)
        session.exitstatus = 1


@pytest.fixture
def kill_later():
    """Processes a test starts by hand; killed (by pid) at teardown."""
    procs = []
    yield procs.append
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait(5)

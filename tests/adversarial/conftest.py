"""Fixtures of the adversarial suite.

Built on tests/lib (the daemon harness, log parser, test CA and upstream), with:
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
from adv import Proxy, record_log, sections
from daemon import proxy_factory
# The shared fixtures (tests/lib/fixtures.py): the session-scoped test CA and test upstreams.
from fixtures import certs, upstream  # noqa: F401


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than 10 s (named so in the test)")


@pytest.fixture
def proxy(tmp_path, certs):
    """Factory: proxy(up, proxy={...}, upstream={...}, limits={...}, log={...}) -> Proxy.

    Logs at debug level by default (so every line the proxy can write is checked for
    credentials). At teardown: SIGTERM, exit 0, no sanitizer report, stderr recorded."""
    yield from proxy_factory(tmp_path, lambda up, **over: sections(certs, up, **over),
                             on_stop=record_log, cls=Proxy)


def record_gaps(logs, client):
    """What the suite-wide record lacks to prove anything (empty when it covers the sensitive
    paths): its silence on credentials means little without them."""
    text = "".join(logs)
    gaps = []
    if "event=auth.ok" not in text and '"event":"auth.ok"' not in text:
        gaps.append("no auth.ok line")
    if "event=auth.fail" not in text:
        gaps.append("no auth.fail line")
    if "masked=yes" not in text:
        gaps.append("no debug-level AUTH line")
    if sum(len(c) for c in client) <= 10000:
        gaps.append("clients received under 10 kB")
    return gaps


def pytest_sessionfinish(session, exitstatus):
    """Promise 3, suite-wide, after every test whatever their order: no credential in any
    log line or any reply of the whole run; and, when the whole suite ran, a record that
    covers the sensitive paths (else its silence proves nothing)."""
    logs, client = adv.RECORD["logs"], adv.RECORD["client"]
    msgs = []
    hits = adv.find_secrets(logs + client)
    if hits:
        msgs.append("CREDENTIAL LEAK: %d occurrence(s), e.g. %r" % (len(hits), hits[:3]))
    if len(logs) >= 50 and record_gaps(logs, client):
        msgs.append("credential check proves nothing: %s" % ", ".join(record_gaps(logs, client)))
    if msgs:
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        for msg in msgs:
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

"""sd_notify: READY, STATUS, RELOADING/READY around SIGHUP, STOPPING, WATCHDOG (Type=notify)."""
import signal
import time

import pytest

from servicelib import Client, free_port, parse_status, send_message


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_notify_ready_after_listening_reload_and_stopping(upstream, proxy, notify, abstract):
    up = upstream()
    n = notify(abstract=abstract)
    port = free_port()
    p = proxy(up, start=False, proxy={"listen": "127.0.0.1:%d" % port, "workers": "2"})
    p.start(env={"NOTIFY_SOCKET": n.path}, wait=False)
    i, _ = n.wait_for(lambda t: t == "READY=1", timeout=10)
    assert i is not None, "no READY=1:\n" + p.stderr()
    # READY=1 means "accepting": the very first connection after it is served.
    with Client(port) as c:
        assert c.read_reply().code == 220
        c.expect("QUIT", 221)
    assert n.texts()[:1] == ["READY=1"], "something came before READY=1: %r" % n.texts()
    p.wait_started()

    # Reload: RELOADING=1 with the monotonic clock (systemd's reload protocol), then READY=1.
    after = len(n.texts())
    before_us = int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6)
    p.signal(signal.SIGHUP)
    i, text = n.wait_for(lambda t: t.startswith("RELOADING=1"), after=after)
    assert text is not None, n.texts()
    lines = text.split("\n")
    assert lines[0] == "RELOADING=1" and lines[1].startswith("MONOTONIC_USEC="), text
    usec = int(lines[1].split("=", 1)[1])
    assert before_us <= usec <= before_us + 5_000_000, (before_us, usec)
    j, _ = n.wait_for(lambda t: t == "READY=1", after=i + 1)
    assert j is not None, n.texts()
    assert p.wait_event("config.reload"), p.stderr()

    # A refused reload still ends with READY=1: the service is up, on its old config.
    with open(p.conf, "a") as f:
        f.write("no_such_key = 1\n")
    after = len(n.texts())
    p.signal(signal.SIGHUP)
    i, _ = n.wait_for(lambda t: t.startswith("RELOADING=1"), after=after)
    j, _ = n.wait_for(lambda t: t == "READY=1", after=(i or 0) + 1)
    assert i is not None and j is not None, n.texts()
    assert p.wait_event("config.reload-refused"), p.stderr()
    assert send_message(port, "after-refused-reload").startswith("220 proxy.test")

    after = len(n.texts())
    p.signal(signal.SIGTERM)
    i, _ = n.wait_for(lambda t: t == "STOPPING=1", after=after)
    assert i is not None, n.texts()
    assert p.proc.wait(15) == 0
    assert "READY=1" not in n.texts()[i:], "READY after STOPPING: %r" % n.texts()[i:]
    # NotifyAccess=main: only the main process may speak to systemd, never a worker.
    pids = {pid for _, pid, _ in n.messages}
    assert pids == {p.pid}, "senders %r, main %d" % (pids, p.pid)


def test_notify_status_counts_sessions_and_messages(upstream, proxy, notify):
    up = upstream()
    n = notify()
    p = proxy(up, env={"NOTIFY_SOCKET": n.path}, proxy={"workers": "2"})
    _, first = n.wait_for(lambda t: t.startswith("STATUS="))
    st = parse_status(first)
    assert st == {"sessions": 0, "total": 0, "messages": 0, "failed": 0, "workers": 2}, first

    # A session held open shows in sessions=, within one 2 s status period.
    c = p.client()
    assert c.read_reply().code == 220
    after = len(n.texts())
    _, text = n.wait_for(lambda t: (parse_status(t) or {}).get("sessions") == 1, after=after,
                         timeout=5)
    assert text is not None, n.texts()[after:]
    c.expect("QUIT", 221)
    c.close()

    for k in range(3):
        send_message(p.port, "status-%d" % k)
    assert up.wait_messages(3)
    after = len(n.texts())
    _, text = n.wait_for(lambda t: (parse_status(t) or {}).get("messages") == 3, after=after,
                         timeout=5)
    assert text is not None, n.texts()[after:]
    st = parse_status(text)
    assert st["total"] == 4 and st["failed"] == 0 and st["sessions"] == 0, text
    # No watchdog was asked for, so none is sent.
    assert "WATCHDOG=1" not in n.texts()


def test_notify_watchdog_pings_twice_per_period(upstream, proxy, notify):
    n = notify()
    p = proxy(upstream(), env={"NOTIFY_SOCKET": n.path, "WATCHDOG_USEC": "200000"})
    t0 = time.monotonic()
    time.sleep(1.5)
    pings = [t for t, pid, text in n.messages if text == "WATCHDOG=1" and t >= t0]
    assert len(pings) >= 10, "%d WATCHDOG=1 in 1.5 s with WATCHDOG_USEC=200000" % len(pings)
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert max(gaps) < 0.2, "a gap of %.3f s would let systemd's watchdog fire" % max(gaps)
    assert {pid for _, pid, text in n.messages} == {p.pid}


def test_notify_watchdog_for_another_pid_is_ignored(upstream, proxy, notify):
    """WATCHDOG_PID names the process meant to ping; another pid's watchdog is not ours."""
    n = notify()
    proxy(upstream(), env={"NOTIFY_SOCKET": n.path, "WATCHDOG_USEC": "200000",
                           "WATCHDOG_PID": "1"})
    time.sleep(0.8)
    assert "READY=1" in n.texts()
    assert "WATCHDOG=1" not in n.texts()

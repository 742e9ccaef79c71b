"""Workers: a worker that dies is logged and replaced; the service keeps delivering."""
import os
import signal
import time

import pytest

from servicelib import _alive, send_message


def parent_of(pid):
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def test_killed_worker_is_logged_and_replaced_and_service_keeps_delivering(upstream, proxy):
    up = upstream()
    p = proxy(up, proxy={"workers": "2"})
    pids = p.worker_pids()
    assert len(pids) == 2 and all(parent_of(w) == p.pid for w in pids), pids
    assert p.events("proxy.start")[0]["workers"] == "2"

    victim, survivor = pids
    os.kill(victim, signal.SIGKILL)
    ex = p.wait_event("worker.exit", pid=str(victim))
    assert ex, p.stderr()
    assert ex[0]["restart"] == "yes" and ex[0]["level"] == "error", ex
    assert ex[0]["signal"] == "Killed" and "status" not in ex[0], ex
    starts = p.wait_event("worker.start", 3)
    assert len(starts) == 3, p.stderr()
    new = int(starts[2]["pid"])
    assert new not in pids and starts[2]["generation"] == "1"
    assert _alive(survivor) and _alive(new) and parent_of(new) == p.pid
    assert sorted(p.worker_pids()) == sorted([survivor, new])

    for k in range(20):
        assert send_message(p.port, "after-kill-%d" % k).startswith("220 proxy.test")
    assert up.wait_messages(20)
    assert p.proc.poll() is None


def test_workers_auto_starts_one_per_cpu(upstream, proxy):
    p = proxy(upstream(), proxy={"workers": "auto"})
    want = os.sysconf("SC_NPROCESSORS_ONLN")
    assert p.events("proxy.start")[0]["workers"] == str(min(want, 64))
    assert len(p.worker_pids()) == min(want, 64)


def test_stop_leaves_no_worker_behind(upstream, proxy):
    p = proxy(upstream(), proxy={"workers": "3"})
    pids = p.worker_pids()
    assert len(pids) == 3
    p.signal(signal.SIGTERM)
    assert p.proc.wait(10) == 0
    end = time.monotonic() + 5
    while any(_alive(w) for w in pids) and time.monotonic() < end:
        time.sleep(0.05)
    assert not any(_alive(w) for w in pids)


def test_workers_stop_when_the_main_process_dies(upstream, proxy):
    """A main process killed outright (OOM killer, watchdog SIGABRT, kill -9) must not leave
    workers serving unsupervised on the sockets, where a restarted proxy cannot bind them."""
    p = proxy(upstream(), proxy={"workers": "2"})
    pids = p.worker_pids()
    os.kill(p.pid, signal.SIGKILL)
    p.proc.wait(5)
    end = time.monotonic() + 3           # no sessions: a SIGTERMed worker exits at once
    while any(_alive(w) for w in pids) and time.monotonic() < end:
        time.sleep(0.05)
    alive = [w for w in pids if _alive(w)]
    for w in alive:
        os.kill(w, signal.SIGKILL)
    p.proc = None                       # already reaped; nothing left for the teardown
    assert not alive, "workers still running after the main process died: %r" % alive

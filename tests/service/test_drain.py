"""SIGTERM drains: running transactions finish and are delivered, idle sessions get 421 after
shutdown_timeout, a message that cannot finish is never half-delivered, exit status 0."""
import signal
import socket
import time

from servicelib import Client


def open_session(p, upto):
    """A session stopped at a point of its transaction: 'idle', 'rcpt' or 'data'."""
    c = p.client(timeout=15)
    assert c.read_reply().code == 220
    c.expect("EHLO device.test", 250)
    if upto in ("rcpt", "data"):
        c.expect("MAIL FROM:<device@example.test>", 250)
        c.expect("RCPT TO:<rcpt@example.test>", 250)
    if upto == "data":
        c.expect("DATA", 354)
    return c


def test_sigterm_drains_running_messages_then_421_and_exit_0(upstream, proxy, notify):
    up = upstream()
    n = notify()
    p = proxy(up, env={"NOTIFY_SOCKET": n.path},
              proxy={"workers": "2", "shutdown_timeout": "2", "timeout": "30"})
    mid_txn = open_session(p, "rcpt")
    mid_data = open_session(p, "data")
    mid_data.send(b"Subject: mid-data\r\n\r\nfirst half\r\n")
    idle = open_session(p, "idle")
    stuck = open_session(p, "data")             # never finishes its message
    stuck.send(b"Subject: stuck\r\n\r\nthis message must not be delivered\r\n")
    assert up.wait_connections(4)
    time.sleep(0.3)                             # the body bytes reach the upstream

    t0 = time.monotonic()
    p.signal(signal.SIGTERM)
    assert p.wait_event("proxy.stop"), p.stderr()
    _, text = n.wait_for(lambda t: t == "STOPPING=1")
    assert text == "STOPPING=1"
    # No new sessions: the listeners are closed at once.
    time.sleep(0.2)
    try:
        c = Client(p.port, timeout=2)
        try:
            got = c.read_reply()
            raise AssertionError("a new connection was served while draining: %r" % got.raw)
        except (EOFError, ConnectionResetError, socket.timeout):
            pass
        finally:
            c.close()
    except ConnectionRefusedError:
        pass

    # Running transactions go on and their messages are delivered.
    r = mid_txn.send_mail("device@example.test", ["rcpt@example.test"],
                          b"Subject: mid-transaction\r\n\r\nsent after SIGTERM\r\n.\r\n",
                          ehlo="device.test")
    assert r.code == 250 and b"queued as" in r.raw, r.raw
    mid_txn.expect("QUIT", 221)
    mid_data.send(b"second half, after SIGTERM\r\n.\r\n")
    r = mid_data.read_reply()
    assert r.code == 250 and b"queued as" in r.raw, r.raw
    mid_data.expect("QUIT", 221)

    # The idle session is told to come back later once shutdown_timeout has passed.
    r = idle.read_reply()
    waited = time.monotonic() - t0
    assert r.first == "421 4.3.2 proxy.test Service shutting down, try again later", r.raw
    # timeout = 30: an upper bound well below it leaves room for a busy machine.
    assert 1.5 <= waited <= 15, "421 after %.2f s with shutdown_timeout = 2" % waited
    assert idle.at_eof()
    # So is the one stuck in DATA; its message is aborted, not delivered in part.
    r = stuck.read_reply()
    assert r.first.startswith("421 4.3.2 proxy.test "), r.raw
    assert stuck.at_eof()

    assert p.proc.wait(20) == 0, p.stderr()
    assert time.monotonic() - t0 < 20
    for c in (mid_txn, mid_data, idle, stuck):
        c.close()

    assert up.wait_closed()
    subjects = sorted(m.body.split(b"\r\n")[0] for m in up.all_messages)
    assert subjects == [b"Subject: mid-data", b"Subject: mid-transaction"], subjects
    mid = [m for m in up.messages if m.body.startswith(b"Subject: mid-data")][0]
    assert mid.body == b"Subject: mid-data\r\n\r\nfirst half\r\nsecond half, after SIGTERM\r\n"
    # The upstream saw the stuck message's bytes but never its final dot.
    stuck_conn = [c for c in up.connections if b"Subject: stuck" in c.raw_tls]
    assert len(stuck_conn) == 1 and not stuck_conn[0].messages
    assert b"\r\n.\r\n" not in stuck_conn[0].raw_tls.split(b"Subject: stuck", 1)[1]
    results = {d.get("from"): d["result"] for d in p.events("message")}
    assert list(p.events("message", result="aborted")), p.stderr()
    assert sum(1 for d in p.events("message") if d["result"] == "ok") == 2, results
    closes = [d["reason"] for d in p.events("session.close")]
    assert closes.count("shutdown") == 2 and closes.count("quit") == 2, closes
    assert p.events("proxy.exit"), p.stderr()


def test_sigterm_with_nothing_running_exits_at_once(upstream, proxy):
    p = proxy(upstream(), proxy={"workers": "2", "shutdown_timeout": "30"})
    t0 = time.monotonic()
    p.signal(signal.SIGTERM)
    assert p.proc.wait(20) == 0
    assert time.monotonic() - t0 < 15, "idle proxy waited for shutdown_timeout (30 s)"
    exits = p.events("worker.exit")
    assert len(exits) == 2 and all(d["restart"] == "no" and d["level"] == "info"
                                   for d in exits), exits

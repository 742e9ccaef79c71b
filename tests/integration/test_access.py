"""Access control, session limit and timeouts."""
import time


def test_client_outside_allow_gets_554_and_upstream_sees_nothing(upstream, proxy):
    up = upstream("starttls")
    px = proxy(up, proxy={"allow": "10.0.0.0/8"})
    with px.client() as c:
        r = c.read_reply()
        assert r.code == 554 and r.lines[0].startswith("5.7.1"), r
        assert c.at_eof()
    deny = px.wait_event("session.deny")
    assert deny and deny[0]["reason"] == "allow" and deny[0]["client"].startswith("127.0.0.1:")
    assert up.connections == []


def test_second_client_over_max_sessions_gets_421(upstream, proxy):
    up = upstream("starttls")
    px = proxy(up, proxy={"max_sessions": "1"})
    with px.client() as first:
        assert first.read_reply().code == 220
        with px.client() as second:
            r = second.read_reply()
            assert r.code == 421 and r.lines[0].startswith("4.3.2"), r
            assert second.at_eof()
        first.expect("NOOP", 250)
        first.expect("QUIT", 221)
    deny = px.wait_event("session.deny")
    assert deny and deny[0]["reason"] == "max_sessions"
    assert len(up.connections) == 1
    assert px.wait_event("session.close")
    with px.client() as third:                            # the slot was given back
        assert third.read_reply().code == 220


def test_idle_client_gets_421_after_timeout(upstream, proxy):
    up = upstream("starttls")
    px = proxy(up, proxy={"timeout": "2"})
    with px.client(timeout=15) as c:
        assert c.read_reply().code == 220
        c.expect("EHLO d", 250)
        t0 = time.monotonic()
        r = c.read_reply()                                # we say nothing
        assert r.code == 421, r
        assert c.at_eof()
        assert 1.5 < time.monotonic() - t0 < 12
    assert up.wait_closed()


def test_idle_client_in_data_gets_421_and_nothing_delivered(upstream, proxy):
    up = upstream("starttls")
    px = proxy(up, proxy={"timeout": "2"})
    with px.client(timeout=15) as c:
        c.read_reply()
        c.expect("EHLO d", 250)
        c.expect("MAIL FROM:<a@example.test>", 250)
        c.expect("RCPT TO:<b@example.test>", 250)
        c.expect("DATA", 354)
        c.send(b"half a message\r\n")
        r = c.read_reply()
        assert 400 <= r.code < 500, r
    assert up.wait_closed()
    assert up.all_messages == []


def test_stalled_upstream_gives_client_4xx(upstream, proxy):
    up = upstream("starttls", stall_at="mail", override={"mail": b""})   # no reply at all
    px = proxy(up, proxy={"timeout": "2"})
    with px.client(timeout=15) as c:
        c.read_reply()
        c.expect("EHLO d", 250)
        r = c.cmd("MAIL FROM:<a@example.test>")
        assert 400 <= r.code < 500, r


def test_stalled_upstream_after_dot_gives_client_4xx_not_250(upstream, proxy):
    up = upstream("starttls", stall_at="dot")
    px = proxy(up, proxy={"timeout": "2"})
    with px.client(timeout=15) as c:
        c.read_reply()
        c.expect("EHLO d", 250)
        c.expect("MAIL FROM:<a@example.test>", 250)
        c.expect("RCPT TO:<b@example.test>", 250)
        c.expect("DATA", 354)
        c.send(b"x\r\n.\r\n")
        r = c.read_reply()
        assert 400 <= r.code < 500, r

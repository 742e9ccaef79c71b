"""Upstream session reuse ([upstream] reuse = N): a device that ends cleanly leaves its
prepared upstream session (TLS up, verified, logged in) to the next device of the same
profile, after an RSET and its 250; any doubt closes it instead."""
import time

from conftest import PASSWORD, USER, Client, check_config

BODY = b"Subject: reuse\r\n\r\nhello\r\n.\r\n"


def reusing(upstream, proxy, reuse="2", up_kw=None, upstream_over=None, **sections):
    up = upstream("starttls", **(up_kw or {}))
    u = {"username": USER, "password": PASSWORD, "reuse": reuse}
    u.update(upstream_over or {})
    px = proxy(up, proxy={"workers": "1"}, upstream=u, **sections)
    return up, px


def one_message(px, quit=True, source=None, rcpt="b@example.test"):
    c = Client(px.port, source=source) if source else px.client()
    assert c.read_reply().code == 220
    r = c.send_mail("a@example.test", [rcpt], BODY)
    if quit:
        c.expect("QUIT", 221)
    c.close()
    return r


def verbs(conn):
    return [v for v in conn.verbs(tls=True)]


def wait_kept(up, n=1, timeout=10):
    """Until n RSETs arrived upstream: a session is kept only once its RSET is answered
    (a device that comes back sooner gets a new upstream session, not an error)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if sum(verbs(c).count("RSET") for c in up.connections) >= n:
            time.sleep(0.1)     # its 250 on the way back
            return
        time.sleep(0.02)
    raise AssertionError("no RSET upstream")


def test_reused_after_quit_with_an_rset_between(upstream, proxy):
    up, px = reusing(upstream, proxy)
    assert one_message(px).code == 250
    wait_kept(up)
    assert one_message(px).code == 250
    assert up.wait_messages(2)
    assert len(up.connections) == 1, [c.transcript() for c in up.connections]
    v = verbs(up.connections[0])
    # One login; the first device's QUIT never went upstream; an RSET before the second.
    assert v.count("AUTH") == 1 and "QUIT" not in v[:v.index("RSET")], v
    assert v[v.index("RSET") + 1:v.index("RSET") + 2] == ["MAIL"], v
    reuse = px.wait_event("upstream.reuse")
    assert reuse and reuse[0]["messages"] == "1" and reuse[0]["upstream"] == "default"
    # The second session's own byte counts, not the first one's as well.
    closes = px.wait_event("session.close", n=2)
    assert int(closes[1]["up_out"]) < int(closes[0]["up_out"]) + 200, closes


def test_reused_after_eof_between_transactions(upstream, proxy):
    up, px = reusing(upstream, proxy)
    assert one_message(px, quit=False).code == 250
    wait_kept(up)
    assert one_message(px).code == 250
    assert up.wait_messages(2) and len(up.connections) == 1


def test_never_after_an_error_reply(upstream, proxy):
    """A DATA refused with 554 is doubt: the session is closed, the next device gets a new one."""
    up, px = reusing(upstream, proxy, up_kw={"override": {"data": b"554 5.3.0 no\r\n"}})
    c = px.client()
    assert c.read_reply().code == 220
    c.expect("EHLO d.test", 250)
    c.expect("MAIL FROM:<a@example.test>", 250)
    c.expect("RCPT TO:<b@example.test>", 250)
    c.expect("DATA", 554)
    c.expect("RSET", 250)       # the transaction is over: only the doubt remains
    c.expect("QUIT", 221)
    c.close()
    # Closed with QUIT, not kept.
    assert up.connections[0].closed.wait(10) and verbs(up.connections[0])[-1] == "QUIT"
    with px.client() as c2:
        assert c2.read_reply().code == 220
    assert up.wait_connections(2) and not px.events("upstream.reuse"), px.log_lines()


def test_never_mid_transaction(upstream, proxy):
    up, px = reusing(upstream, proxy)
    c = px.client()
    assert c.read_reply().code == 220
    c.expect("EHLO d.test", 250)
    c.expect("MAIL FROM:<a@example.test>", 250)
    c.close()       # gone with a transaction open
    assert up.connections[0].closed.wait(10) and verbs(up.connections[0])[-1] == "QUIT"
    assert one_message(px).code == 250
    assert len(up.connections) == 2 and not px.events("upstream.reuse")


def test_a_session_the_server_closed_is_never_handed_out(upstream, proxy):
    """The server ends the kept session (a 421 idle notice, then close): the next device
    gets a fresh one and never sees an error."""
    up, px = reusing(upstream, proxy, up_kw={
        "inject_after": {"rset": (0.2, b"421 4.4.2 idle too long\r\n")}, "close_at": None})
    assert one_message(px).code == 250
    px.wait_event("session.close", n=1)
    time.sleep(1.0)     # the 421 arrives while the session is kept
    assert one_message(px).code == 250
    assert up.wait_messages(2) and len(up.connections) == 2
    assert not px.events("upstream.reuse")


def test_two_profiles_never_share_one(upstream, proxy):
    up, px = reusing(upstream, proxy, **{
        "device a": {"match": "127.0.0.2"}, "device b": {"match": "127.0.0.3"}})
    assert one_message(px, source="127.0.0.2").code == 250
    px.wait_event("session.close", n=1)
    assert one_message(px, source="127.0.0.3").code == 250
    px.wait_event("session.close", n=2)
    assert len(up.connections) == 2 and not px.events("upstream.reuse")
    # The same profile again takes its own.
    wait_kept(up, 2)
    assert one_message(px, source="127.0.0.2").code == 250
    assert len(up.connections) == 2 and px.wait_event("upstream.reuse", device="a")


def test_max_messages_and_idle_end_a_kept_session(upstream, proxy):
    up, px = reusing(upstream, proxy, upstream_over={"reuse_max_messages": "2",
                                                     "reuse_idle": "1"})
    assert one_message(px).code == 250
    wait_kept(up)
    assert one_message(px).code == 250      # reused: its second message
    px.wait_event("session.close", n=2)
    assert one_message(px).code == 250      # two reached: a new session
    assert len(up.connections) == 2
    # reuse_idle: the kept one is closed with QUIT after a second unused.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(c.closed.is_set() for c in up.connections):
        time.sleep(0.1)
    assert all(c.closed.is_set() for c in up.connections)
    assert "QUIT" in verbs(up.connections[1])


def test_on_by_default_and_never_with_pass_through_auth(upstream, proxy):
    up = upstream("starttls")
    px = proxy(up, proxy={"workers": "1"}, upstream={"username": USER, "password": PASSWORD})
    assert one_message(px).code == 250
    wait_kept(up)
    assert one_message(px).code == 250
    assert up.wait_messages(2) and len(up.connections) == 1
    # Where the default would hold every slot of max_connections it stands aside, unasked;
    # a reuse set by the admin stays (and -t warns).
    up3 = upstream("starttls")
    px3 = proxy(up3, proxy={"workers": "1"}, upstream={
        "username": USER, "password": PASSWORD, "max_connections": "2"})
    for _ in range(2):
        assert one_message(px3).code == 250
    assert len(up3.connections) == 2
    up2 = upstream("starttls")
    px2 = proxy(up2, proxy={"workers": "1"}, upstream={"reuse": "2"})    # no username
    for _ in range(2):
        assert one_message(px2).code == 250
    assert len(up2.connections) == 2
    # The device's QUIT went upstream as always.
    assert "QUIT" in verbs(up2.connections[0])


def test_check_warns_of_a_reuse_that_cannot_work_but_not_of_the_default(tmp_path, certs):
    def check(up, workers="1"):
        text = ("[proxy]\nlisten = 127.0.0.1:2525\nhostname = proxy.test\nworkers = %s\n\n"
                "[upstream]\nhost = 127.0.0.1\nca_file = %s\n%s" % (workers, certs["ca"][0], up))
        path, p = check_config(str(tmp_path), text)
        assert p.returncode == 0, p.stderr
        return path, text, p.stderr
    login = "username = %s\npassword = %s\n" % (USER, PASSWORD)
    path, text, err = check("reuse = 3\n")
    line = text.splitlines().index("reuse = 3") + 1
    assert err == "%s:%d: warning: reuse = 3: no username, so the devices' own AUTH passes " \
        "through and no session is ever reused\n" % (path, line), err
    path, text, err = check(login + "reuse = 4\nmax_connections = 8\n", workers="2")
    line = text.splitlines().index("reuse = 4") + 1
    assert err == "%s:%d: warning: reuse = 4 per worker (2 workers) can hold all " \
        "max_connections = 8 sessions idle\n" % (path, line), err
    # The default says nothing: without a username, or where it stands aside by itself.
    assert check("")[2] == ""
    assert check(login + "max_connections = 2\n", workers="1")[2] == ""
    assert check(login)[2] == ""

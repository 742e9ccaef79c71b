"""What the proxy spends at the provider: one login try per password, and a bounded number of
upstream sessions held at once (both counted over all workers, in the shared mapping)."""
import signal
import time

from conftest import PASSWORD, USER
from test_fail_closed import expect_421_greeting


def creds(**kw):
    d = {"username": USER, "password": PASSWORD}
    d.update(kw)
    return d


def logins(up):
    return sum(len(c.auth) for c in up.connections)


def first_reply_once_free(px, timeout=10):
    """Connect until the reply is not the upstream_busy refusal: a slot is given back when the
    worker finishes the session, a moment after it logged session.close, maybe in another
    worker than the one accepting. Return (client, reply); the client is open."""
    end = time.monotonic() + timeout
    while True:
        c = px.client()
        r = c.read_reply()
        if not r.first.startswith("421 4.3.2") or time.monotonic() > end:
            return c, r
        c.close()
        time.sleep(0.05)


def reload(px, n):
    """SIGHUP, then wait for the n-th config.reload line and a worker of the new generation."""
    px.proc.send_signal(signal.SIGHUP)
    assert px.wait_event("config.reload", n), px.stderr()
    assert px.wait_event("worker.start", 1, generation=str(n + 1)), px.stderr()


# ---- auth_retry_after ----------------------------------------------------------------------

def test_refused_login_is_not_retried_until_reload(upstream, proxy):
    up = upstream("starttls", auth_fail=True)
    px = proxy(up, proxy={"workers": "2"}, upstream=creds(auth_retry_after="3600"))
    # The first device pays for the try, as before.
    r = expect_421_greeting(px)
    assert r.lines[0].startswith("4.7.0"), r
    assert px.wait_event("auth.fail")
    # The next ones, on either worker, are refused at accept: no upstream contact at all.
    for _ in range(8):
        r = expect_421_greeting(px)
        assert r.lines[0].startswith("4.7.0"), r
        assert "not retrying" in r.lines[0], r
    assert len(up.connections) == 1 and logins(up) == 1, up.connections
    denied = px.wait_event("session.deny", 8, reason="auth_backoff")
    assert len(denied) == 8 and all(d["level"] == "info" for d in denied), denied
    b, = px.events("auth.backoff")
    assert b["level"] == "warn" and b["user"] == USER and b["seconds"] == "3600", b
    assert len(b["until"]) == 20 and b["until"].endswith("Z"), b
    # A reload (the admin fixed the password, or not) gives the next device one try again.
    reload(px, 1)
    r = expect_421_greeting(px)
    assert r.lines[0].startswith("4.7.0"), r
    assert len(up.connections) == 2 and logins(up) == 2
    assert px.wait_event("auth.backoff", 2)
    expect_421_greeting(px)
    assert len(up.connections) == 2 and logins(up) == 2


def test_login_back_off_ends_after_auth_retry_after(upstream, proxy):
    up = upstream("starttls", auth_fail=True)
    px = proxy(up, upstream=creds(auth_retry_after="2"))
    expect_421_greeting(px)
    assert px.wait_event("auth.backoff")
    expect_421_greeting(px)
    assert logins(up) == 1
    # Poll: once the 2 s are over, a device gets a real try (and starts a new back-off).
    end = time.monotonic() + 20
    while logins(up) < 2 and time.monotonic() < end:
        expect_421_greeting(px)
        time.sleep(0.2)
    assert logins(up) == 2
    assert px.wait_event("auth.backoff", 2)


def test_auth_retry_after_0_tries_every_session(upstream, proxy):
    up = upstream("starttls", auth_fail=True)
    px = proxy(up, upstream=creds(auth_retry_after="0"))
    for i in range(3):
        expect_421_greeting(px)
        assert px.wait_event("auth.fail", i + 1)
    assert logins(up) == 3
    assert not px.events("auth.backoff") and not px.events("session.deny")


def test_temporary_auth_failure_does_not_back_off(upstream, proxy):
    """454 is the provider's trouble, not a verdict on the password: the next session retries."""
    up = upstream("starttls", override={"auth": b"454 4.7.0 Temporary authentication failure\r\n"})
    px = proxy(up, upstream=creds(auth_retry_after="3600"))
    for i in range(2):
        expect_421_greeting(px)
        assert px.wait_event("auth.fail", i + 1)
    assert len(up.connections) == 2
    assert not px.events("auth.backoff")


def test_good_login_is_not_affected(upstream, proxy):
    up = upstream("starttls")
    # Each session logs in (no kept session to take): reuse off.
    px = proxy(up, upstream=creds(auth_retry_after="3600", reuse="0"))
    for _ in range(2):
        with px.client() as c:
            assert c.read_reply().code == 220
            c.expect("QUIT", 221)
    assert logins(up) == 2 and not px.events("auth.backoff")


# ---- max_connections -------------------------------------------------------------------------

def test_max_connections_refuses_the_next_device_without_upstream_contact(upstream, proxy):
    up = upstream("starttls")
    px = proxy(up, proxy={"workers": "2"}, upstream={"max_connections": "3"})
    held = []
    try:
        for _ in range(3):
            c = px.client()
            assert c.read_reply().code == 220
            held.append(c)
        assert len(up.connections) == 3
        r = expect_421_greeting(px)
        assert r.first.startswith("421 4.3.2 "), r
        d, = px.wait_event("session.deny", reason="upstream_busy")
        assert d["level"] == "warn", d
        time.sleep(0.3)     # a late upstream connection would show up here
        assert len(up.connections) == 3
        # One device leaves: its upstream slot is free again.
        held[0].expect("QUIT", 221)
        held.pop(0).close()
        assert px.wait_event("session.close", 1)
        c, r = first_reply_once_free(px)
        held.append(c)
        assert r.code == 220, r
        c.expect("EHLO d", 250)
        c.expect("MAIL FROM:<a@example.test>", 250)
        assert len(up.connections) == 4
    finally:
        for c in held:
            c.close()


def test_max_connections_slot_is_freed_by_a_failed_upstream(upstream, proxy):
    """A session whose upstream preparation failed gives its slot back (no leak)."""
    up = upstream("starttls", close_at="greeting")
    px = proxy(up, upstream={"max_connections": "1"})
    for i in range(3):
        c, r = first_reply_once_free(px)
        c.close()
        assert r.code == 421 and not r.first.startswith("421 4.3.2"), r
        assert up.wait_connections(i + 1)
    assert len(up.connections) == 3


def test_sessions_already_preparing_do_not_try_a_refused_password(upstream, proxy):
    """A burst of devices: the ones whose upstream was on its way when the first login was
    refused give up at their AUTH step instead of sending the same password."""
    import threading
    # Margins of 2 s each way: the late ones arrive while the first one waits for its EHLO
    # reply, and reach their AUTH step 2 s after its refusal.
    up = upstream("starttls", auth_fail=True, reply_delay={"tls_ehlo": 4.0})
    px = proxy(up, proxy={"workers": "2"}, upstream=creds(auth_retry_after="3600"))
    replies = []

    def device():
        with px.client(timeout=20) as c:
            replies.append(c.read_reply())

    first = threading.Thread(target=device)
    first.start()
    time.sleep(2.0)                 # the first is waiting for its EHLO reply
    late = [threading.Thread(target=device) for _ in range(3)]
    for t in late:
        t.start()
    for t in [first] + late:
        t.join(30)
    assert len(replies) == 4 and all(r.first.startswith("421 4.7.0") for r in replies), replies
    assert len(up.connections) == 4, up.connections    # they were on their way
    assert logins(up) == 1, [c.auth for c in up.connections]
    assert len(px.events("auth.backoff")) == 1

"""AUTH: pass-through over TLS, or the proxy's own credentials injected before the greeting."""
import base64
import os

import pytest

from conftest import PASSWORD, USER, swaks
from test_commands import keywords
from test_fail_closed import expect_421_greeting

PLAIN_IR = base64.b64encode(b"\0" + USER.encode() + b"\0" + PASSWORD.encode()).decode()
B64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731


def creds(**kw):
    d = {"username": USER, "password": PASSWORD}
    d.update(kw)
    return d


# ---- pass-through (no username configured) -------------------------------------------------

def test_client_auth_plain_initial_response_passes_through_tls(relay):
    up, px = relay
    with px.client() as c:
        c.read_reply()
        c.expect("EHLO d", 250)
        c.expect("AUTH PLAIN " + PLAIN_IR, 235)
    conn = up.connections[0]
    assert conn.auth == [("PLAIN", USER, PASSWORD, True)]
    assert "AUTH" in conn.verbs(True) and "AUTH" not in conn.verbs(False)


def test_client_auth_plain_continuation_passes_through(relay):
    up, px = relay
    with px.client() as c:
        c.read_reply()
        c.expect("EHLO d", 250)
        c.expect("AUTH PLAIN", 334)
        c.expect(PLAIN_IR, 235)
    assert up.connections[0].auth == [("PLAIN", USER, PASSWORD, True)]


def test_client_auth_login_passes_through(relay):
    up, px = relay
    with px.client() as c:
        c.read_reply()
        c.expect("EHLO d", 250)
        c.expect("AUTH LOGIN", 334)
        c.expect(B64(USER), 334)
        c.expect(B64(PASSWORD), 235)
    assert up.connections[0].auth == [("LOGIN", USER, PASSWORD, True)]


def test_client_auth_failure_is_relayed(relay):
    up, px = relay
    with px.client() as c:
        c.read_reply()
        c.expect("EHLO d", 250)
        r = c.expect("AUTH PLAIN " + B64("\0" + USER + "\0wrong"), 535)
        assert r.first == "535 5.7.8 Error: authentication failed"
        c.expect("NOOP", 250)


def test_swaks_auth_login_passes_through(relay):
    up, px = relay
    p = swaks(px.port, "--auth", "LOGIN", "--auth-user", USER, "--auth-password", PASSWORD)
    assert p.returncode == 0, p.stdout + p.stderr
    assert up.wait_messages(1)
    assert up.connections[0].auth == [("LOGIN", USER, PASSWORD, True)]


# ---- the proxy's own credentials -----------------------------------------------------------

def test_proxy_authenticates_upstream_before_greeting(upstream, proxy):
    up = upstream("starttls")
    px = proxy(up, upstream=creds())
    with px.client() as c:
        assert c.read_reply().code == 220
        conn, = up.connections
        assert conn.auth == [("PLAIN", USER, PASSWORD, True)]
        assert conn.verbs(True) == ["EHLO", "AUTH"]
        kw = keywords(c.expect("EHLO d", 250))
        assert "AUTH" not in kw
        c.expect("MAIL FROM:<a@example.test>", 250)
    assert px.wait_event("auth.ok")


def test_client_auth_is_answered_235_locally_when_proxy_has_credentials(upstream, proxy):
    up = upstream("starttls")
    px = proxy(up, upstream=creds())
    with px.client() as c:
        c.read_reply()
        c.expect("EHLO d", 250)
        c.expect("AUTH PLAIN " + B64("\0legacy\0device-pw"), 235)
        r = c.send_mail("a@example.test", ["b@example.test"], b"x\r\n.\r\n", ehlo="d")
        assert r.code == 250
    conn, = up.connections
    assert conn.verbs(True).count("AUTH") == 1
    assert conn.auth == [("PLAIN", USER, PASSWORD, True)]
    assert b"device-pw" not in conn.transcript and B64("\0legacy\0device-pw").encode() \
        not in conn.transcript


def test_client_auth_login_answered_locally_too(upstream, proxy):
    up = upstream("implicit")
    px = proxy(up, upstream=creds())
    with px.client() as c:
        c.read_reply()
        c.expect("EHLO d", 250)
        r = c.cmd("AUTH LOGIN")
        if r.code == 334:
            c.expect(B64("legacy"), 334)
            r = c.cmd(B64("device-pw"))
        assert r.code == 235
    assert len(up.connections[0].auth) == 1


@pytest.mark.parametrize("caps_auth,conf,mech", [
    (["AUTH LOGIN"], {}, "LOGIN"),
    (["AUTH PLAIN LOGIN"], {"auth_mechanism": "login"}, "LOGIN"),
    (["AUTH LOGIN PLAIN"], {"auth_mechanism": "plain"}, "PLAIN"),
    (["AUTH LOGIN PLAIN"], {"auth_mechanism": "auto"}, "PLAIN"),
])
def test_proxy_auth_mechanism_choice(upstream, proxy, caps_auth, conf, mech):
    caps = ["PIPELINING", "SIZE 52428800", "8BITMIME", "ENHANCEDSTATUSCODES"] + caps_auth
    up = upstream("starttls", caps=caps)
    px = proxy(up, upstream=creds(**conf))
    with px.client() as c:
        assert c.read_reply().code == 220
    assert up.connections[0].auth == [(mech, USER, PASSWORD, True)]


def test_password_file_is_used(upstream, proxy, tmp_path):
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    os.chmod(pw, 0o600)
    up = upstream("starttls")
    px = proxy(up, upstream={"username": USER, "password_file": str(pw)})
    with px.client() as c:
        assert c.read_reply().code == 220
    assert up.connections[0].auth == [("PLAIN", USER, PASSWORD, True)]


def test_upstream_auth_failure_gives_421_greeting_and_log(upstream, proxy):
    up = upstream("starttls", auth_fail=True)
    px = proxy(up, upstream=creds())
    r = expect_421_greeting(px)
    assert r.lines[0].startswith("4.7.0"), r
    assert px.wait_event("auth.fail")
    assert "MAIL" not in up.connections[0].verbs()


def test_password_never_in_logs(upstream, proxy):
    """Debug level, successful and failed proxy AUTH and client pass-through AUTH."""
    up_ok, up_bad = upstream("starttls"), upstream("starttls", auth_fail=True)
    pxs = [proxy(up_ok, upstream=creds(), log={"level": "debug"}),
           proxy(up_bad, upstream=creds(), log={"level": "debug"}),
           proxy(up_ok, log={"level": "debug"})]
    for px in pxs[:2]:
        with px.client() as c:
            c.read_reply()
    with pxs[2].client() as c:
        c.read_reply()
        c.expect("EHLO d", 250)
        c.expect("AUTH PLAIN " + PLAIN_IR, 235)
    with pxs[2].client() as c:
        c.read_reply()
        c.expect("EHLO d", 250)
        c.expect("AUTH LOGIN", 334)
        c.expect(B64(USER), 334)
        c.expect(B64(PASSWORD), 235)
    for px in pxs:
        px.stop()
        text = px.stderr()
        assert PASSWORD not in text
        for frag in secret_base64_fragments(PASSWORD.encode(), USER.encode()):
            assert frag not in text, "base64 of the password in the log: %s" % frag


def secret_base64_fragments(pw, user):
    """Base64 forms of pw at every alignment (the part that depends on pw alone)."""
    out = {PLAIN_IR, base64.b64encode(pw).decode().rstrip("=")}
    for pad in (1, 2):
        enc = base64.b64encode(b"\0" * pad + pw).decode()
        out.add(enc[4:-4])
    return [f for f in out if len(f) >= 8]

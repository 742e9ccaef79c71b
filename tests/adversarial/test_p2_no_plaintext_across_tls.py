"""Promise 2: no plaintext crosses a TLS boundary.

Bytes the upstream slips in around STARTTLS never take part in the TLS session; replies nobody
asked for are never handed to the client as the answer to its command; and only what the
server says over TLS (capabilities, AUTH mechanisms) is believed.
"""
import time

import pytest

from adv import (PASSWORD, USER, assert_upstream_got_nothing_of_the_client,
                 expect_421_greeting, wait_upstream_fail)

DEFAULT_TLS_EHLO = (b"250-mail.test\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n"
                    b"250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 AUTH PLAIN LOGIN\r\n")


def keywords(reply):
    return {l.split()[0].split("=")[0].upper() for l in reply.lines[1:]}


# ---- around STARTTLS -----------------------------------------------------------------------

def test_fake_capabilities_in_the_starttls_220_segment_abort_before_tls(upstream, proxy):
    up = upstream("starttls", inject_after_starttls=b"250-evil\r\n250 AUTH PLAIN\r\n")
    px = proxy(up)
    expect_421_greeting(px)
    f = wait_upstream_fail(px)
    assert f["reason"] == "response-injection", f
    assert up.wait_closed()
    assert not up.connections[0].tls
    assert_upstream_got_nothing_of_the_client(up)


INJECT_BEFORE_HELLO = [
    b"250 2.0.0 injected\r\n",
    b"\x15\x03\x03\x00\x02\x02\x28",                   # a plaintext fatal alert record
    b"\x16\x03\x03\x00\x04\x0e\x00\x00\x00",           # a plaintext ServerHelloDone record
]


@pytest.mark.parametrize("delay", [0.0, 0.002])
@pytest.mark.parametrize("inject", INJECT_BEFORE_HELLO, ids=["smtp", "alert", "hello-done"])
def test_bytes_in_a_separate_segment_before_the_client_hello_fail_the_handshake(
        upstream, proxy, inject, delay):
    """The 220 comes alone; the injected bytes follow in their own segment, racing the
    ClientHello. Either the proxy still sees them buffered (injection) or TLS reads them as
    a record (handshake failure): never a session."""
    up = upstream("starttls", inject_after={"starttls": (delay, inject)})
    px = proxy(up)
    expect_421_greeting(px)
    f = wait_upstream_fail(px)
    assert f["reason"] in ("response-injection", "handshake"), f
    assert not px.events("tls.handshake"), "a handshake completed over injected bytes"
    assert up.wait_closed()
    assert up.connections[0].verbs(True) == []
    assert_upstream_got_nothing_of_the_client(up)


# ---- unsolicited replies over TLS ------------------------------------------------------------

def test_extra_reply_in_the_tls_ehlo_segment_aborts_preparation(upstream, proxy):
    up = upstream("starttls", override={"tls_ehlo": DEFAULT_TLS_EHLO +
                                        b"250 2.1.0 Sender injected ok\r\n"})
    px = proxy(up)
    expect_421_greeting(px)
    f = wait_upstream_fail(px)
    assert f["stage"] == "ehlo-tls" and f["reason"] == "protocol", f
    assert_upstream_got_nothing_of_the_client(up)


def _settle_then(c, line, pause=0.6):
    """Wait for the injection to land, then send a command; return every reply after it."""
    time.sleep(pause)
    try:
        c.send(line)
    except OSError:
        pass
    try:
        return c.read_all_replies(10)
    except (ConnectionResetError, EOFError):
        return []


def test_unsolicited_reply_after_tls_ehlo_is_not_the_answer_to_the_next_command(upstream,
                                                                               proxy):
    up = upstream("starttls", inject_after={"tls_ehlo": (0.2, b"250 2.1.0 injected ok\r\n")})
    px = proxy(up)
    with px.client() as c:
        assert c.read_reply().code == 220
        replies = _settle_then(c, b"MAIL FROM:<a@example.test>\r\n")
    assert b"injected" not in c.received, c.received
    assert replies and all(400 <= r.code < 500 for r in replies), replies
    assert "MAIL" not in up.connections[0].verbs()
    assert px.wait_event("upstream.protocol")


def test_unsolicited_reply_after_noop_is_not_the_answer_to_mail(upstream, proxy):
    up = upstream("starttls", inject_after={"noop": (0.2, b"250 2.1.0 Sender injected\r\n")})
    px = proxy(up)
    with px.client() as c:
        c.read_reply()
        c.expect("NOOP", 250)
        replies = _settle_then(c, b"MAIL FROM:<a@example.test>\r\n")
    assert b"injected" not in c.received
    assert replies and replies[0].code // 100 == 4, replies
    assert up.all_messages == []


def test_unsolicited_354_is_never_taken_as_go_ahead_for_the_body(upstream, proxy):
    """An early 354 after RCPT must not make the proxy stream the body: the DATA answer is
    what the upstream says after DATA, and here the session is dropped instead."""
    up = upstream("starttls", inject_after={"rcpt": (0.2, b"354 injected go ahead\r\n")})
    px = proxy(up)
    with px.client() as c:
        c.read_reply()
        c.expect("EHLO d.test", 250)
        c.expect("MAIL FROM:<a@example.test>", 250)
        c.expect("RCPT TO:<b@example.test>", 250)
        replies = _settle_then(c, b"DATA\r\nSECRET-BODY-LINE\r\n.\r\n")
    assert 354 not in [r.code for r in replies], replies
    assert b"injected" not in c.received
    conn, = up.connections
    assert "DATA" not in conn.verbs() and b"SECRET-BODY-LINE" not in conn.transcript
    assert up.all_messages == []


def test_unsolicited_421_is_relayed_and_ends_the_session(upstream, proxy):
    up = upstream("starttls", inject_after={"tls_ehlo": (0.2, b"421 4.3.2 going down\r\n")})
    px = proxy(up)
    with px.client() as c:
        assert c.read_reply().code == 220
        time.sleep(0.6)
        rs = c.read_all_replies(10)
    assert [r.first for r in rs] == ["421 4.3.2 going down"], rs


# ---- only post-TLS capabilities count -----------------------------------------------------------

def creds():
    return {"username": USER, "password": PASSWORD}


@pytest.mark.parametrize("plain_auth,tls_auth,mech", [
    ("AUTH PLAIN", "AUTH LOGIN", "LOGIN"),
    ("AUTH LOGIN", "AUTH PLAIN", "PLAIN"),
])
def test_proxy_login_uses_the_mechanism_offered_over_tls_not_before(upstream, proxy,
                                                                    plain_auth, tls_auth,
                                                                    mech):
    up = upstream("starttls", plain_caps=["STARTTLS", plain_auth],
                  caps=["SIZE 52428800", "ENHANCEDSTATUSCODES", tls_auth])
    px = proxy(up, upstream=creds())
    with px.client() as c:
        assert c.read_reply().code == 220
    conn, = up.connections
    assert conn.auth == [(mech, USER, PASSWORD, True)]
    assert "AUTH" not in conn.verbs(False)


def test_auth_offered_only_before_tls_is_not_used(upstream, proxy):
    up = upstream("starttls", plain_caps=["STARTTLS", "AUTH PLAIN LOGIN"],
                  caps=["SIZE 52428800", "ENHANCEDSTATUSCODES"])
    px = proxy(up, upstream=creds())
    r = expect_421_greeting(px)
    assert r.lines[0].startswith("4.7."), r
    f = wait_upstream_fail(px)
    assert f["reason"] == "auth", f
    assert "AUTH" not in up.connections[0].verbs()


PIPELINED = (b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\n"
             b"RCPT TO:<c@example.test>\r\nDATA\r\n")


def _pipeline_through(px):
    with px.client() as c:
        c.read_reply()
        kw = keywords(c.expect("EHLO d.test", 250))
        c.send(PIPELINED)
        codes = [c.read_reply().code for _ in range(4)]
        c.send(b"pipelined\r\n.\r\n")
        codes.append(c.read_reply().code)
        c.expect("QUIT", 221)
    return kw, codes


def test_pipelining_offered_only_before_tls_is_not_used_upstream(upstream, proxy):
    up = upstream("starttls", plain_caps=["STARTTLS", "PIPELINING"],
                  caps=["SIZE 52428800", "ENHANCEDSTATUSCODES", "8BITMIME"],
                  pipeline_probe=0.1)
    px = proxy(up)
    kw, codes = _pipeline_through(px)
    assert "PIPELINING" not in kw
    assert codes == [250, 250, 250, 354, 250]
    conn, = up.connections
    assert conn.pipelined == [], "commands sent ahead of replies: %r" % conn.pipelined
    assert up.wait_messages(1)


def test_pipelining_offered_over_tls_is_used_upstream_probe_control(upstream, proxy):
    """Control for the test above: the probe does see pipelining when the proxy does it."""
    up = upstream("starttls", plain_caps=["STARTTLS"],
                  caps=["PIPELINING", "SIZE 52428800", "ENHANCEDSTATUSCODES"],
                  pipeline_probe=0.1)
    px = proxy(up)
    kw, codes = _pipeline_through(px)
    assert "PIPELINING" in kw and codes == [250, 250, 250, 354, 250]
    assert up.connections[0].pipelined, "the probe saw no pipelining"


@pytest.mark.parametrize("plain_size,tls_size,shown", [("1000", "52428800", "52428800"),
                                                        ("52428800", "1000", "1000")])
def test_size_limit_comes_from_the_tls_ehlo(upstream, proxy, plain_size, tls_size, shown):
    up = upstream("starttls", plain_caps=["STARTTLS", "SIZE " + plain_size],
                  caps=["SIZE " + tls_size, "ENHANCEDSTATUSCODES"])
    px = proxy(up, limits={"max_message_size": "0"})
    with px.client() as c:
        c.read_reply()
        r = c.expect("EHLO d.test", 250)
    assert "SIZE " + shown in r.lines[1:], r.lines

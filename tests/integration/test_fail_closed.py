"""Every upstream failure before the greeting becomes a 421 greeting; nothing goes in plaintext."""
import time

import pytest

from daemon import refusing_port

SECRET_VERBS = {"MAIL", "RCPT", "DATA", "AUTH", "BDAT"}


def expect_421_greeting(px, timeout=15, prompt=True):
    """The greeting is a 421 followed by a close; with prompt, well before the proxy's
    10 s timeout (so a refusal is not confused with a stall that happens to end in 421)."""
    t0 = time.monotonic()
    with px.client(timeout) as c:
        r = c.read_reply()
        if prompt:
            assert time.monotonic() - t0 < 8, "421 only after %.1fs: %r" % (
                time.monotonic() - t0, r)
        assert r.code == 421, r
        assert r.lines[0].startswith("4."), "421 without enhanced status: %r" % r
        assert c.at_eof(), "421 greeting not followed by close"
    return r


def assert_nothing_plaintext(up):
    for conn in up.connections:
        assert not SECRET_VERBS & set(conn.verbs(False)), conn.commands



def test_unreachable_upstream_gives_421(proxy):
    px = proxy(None, upstream={"port": str(refusing_port())})
    expect_421_greeting(px)
    assert px.wait_event("upstream.fail")


def test_client_commands_after_failed_upstream_go_nowhere(upstream, proxy):
    up = upstream("starttls", starttls=False)
    px = proxy(up)
    with px.client() as c:
        # a device that does not wait for the greeting
        c.send(b"EHLO d\r\nAUTH PLAIN AGRldmljZUBleGFtcGxlLnRlc3QAczNjcmV0LVBhNTU=\r\n"
               b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\nsecret\r\n.\r\n")
        assert c.read_reply().code == 421
    assert up.wait_closed()
    assert_nothing_plaintext(up)
    assert b"secret" not in up.connections[0].transcript


def test_no_starttls_advertised_gives_421_and_no_plaintext(upstream, proxy):
    up = upstream("starttls", starttls=False)
    px = proxy(up)
    expect_421_greeting(px)
    assert up.wait_closed()
    assert_nothing_plaintext(up)
    assert "STARTTLS" not in up.connections[0].verbs()
    assert px.wait_event("upstream.fail")


@pytest.mark.parametrize("reply", [b"454 4.7.0 TLS not available due to local problem\r\n",
                                   b"502 5.5.1 Error: command not implemented\r\n",
                                   b"554 5.7.3 no\r\n"])
def test_starttls_refused_gives_421(upstream, proxy, reply):
    up = upstream("starttls", override={"starttls": reply})
    px = proxy(up)
    expect_421_greeting(px)
    assert up.wait_closed()
    assert_nothing_plaintext(up)
    assert px.wait_event("upstream.fail")


def test_garbage_instead_of_handshake_gives_421(upstream, proxy):
    up = upstream("starttls", handshake_garbage=b"HTTP/1.0 400 Bad Request\r\n\r\n")
    px = proxy(up)
    expect_421_greeting(px)
    assert_nothing_plaintext(up)
    assert px.wait_event("upstream.fail")


def test_plaintext_server_on_implicit_port_gives_421(upstream, proxy):
    up = upstream("implicit", implicit_plaintext=True)
    px = proxy(up)
    expect_421_greeting(px)
    assert_nothing_plaintext(up)
    assert px.wait_event("upstream.fail")


def test_implicit_tls_against_starttls_server_gives_421(upstream, proxy):
    up = upstream("starttls")
    px = proxy(up, upstream={"tls": "implicit"})
    expect_421_greeting(px)
    assert_nothing_plaintext(up)


@pytest.mark.parametrize("how", ["close_at", "rst_at"])
@pytest.mark.parametrize("mode,stage", [
    ("starttls", "connect"), ("starttls", "greeting"), ("starttls", "ehlo"),
    ("starttls", "starttls"), ("starttls", "handshake"),
    ("implicit", "connect"), ("implicit", "handshake"), ("implicit", "greeting"),
])
def test_upstream_lost_while_preparing_gives_421(upstream, proxy, mode, stage, how):
    up = upstream(mode, **{how: stage})
    px = proxy(up)
    expect_421_greeting(px)
    assert_nothing_plaintext(up)
    assert px.wait_event("upstream.fail")


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_upstream_lost_after_greeting_gives_421_to_next_command(upstream, proxy, mode):
    up = upstream(mode, close_at="tls_ehlo")
    px = proxy(up)
    with px.client() as c:
        r = c.read_reply()            # the proxy may already have seen the close: 421 here
        if r.code == 220:
            r = c.cmd("EHLO d")
            if r.code == 250:
                r = c.cmd("MAIL FROM:<a@example.test>")
        assert r.code == 421, r
        assert c.at_eof()


@pytest.mark.parametrize("stage,reply", [
    ("greeting", b"22O mail.test ESMTP\r\n"),
    ("greeting", b"220 mail.test bare LF\n"),
    ("greeting", b"554 5.3.2 go away\r\n"),
    ("ehlo", b"250-mail.test\r\n250-STARTTLS\n250 8BITMIME\r\n"),
    ("ehlo", b"250-mail.test\r\n550-STARTTLS\r\n250 8BITMIME\r\n"),
    ("tls_ehlo", b"250-mail.test\r\n251 PIPELINING\r\n"),
    ("tls_ehlo", b"25O mail.test\r\n"),
    ("tls_ehlo", b"550 5.7.1 go away\r\n"),
])
def test_malformed_or_negative_replies_while_preparing_give_421(upstream, proxy, stage, reply):
    up = upstream("starttls", override={stage: reply})
    px = proxy(up)
    expect_421_greeting(px)
    assert_nothing_plaintext(up)


def test_stalled_upstream_greeting_gives_421_after_timeout(upstream, proxy):
    up = upstream("starttls", stall_at="connect")
    px = proxy(up, proxy={"timeout": "2"})
    t0 = time.monotonic()
    expect_421_greeting(px, timeout=15, prompt=False)
    assert time.monotonic() - t0 < 12


def test_stalled_handshake_gives_421_after_timeout(upstream, proxy):
    up = upstream("implicit", stall_at="handshake")
    px = proxy(up, proxy={"timeout": "2"})
    expect_421_greeting(px, timeout=15, prompt=False)


@pytest.mark.parametrize("how", ["close_at", "rst_at"])
def test_upstream_lost_between_commands_gives_421(upstream, proxy, how):
    up = upstream("starttls", **{how: "mail"})
    px = proxy(up)
    with px.client() as c:
        c.read_reply()
        c.expect("EHLO d", 250)
        r = c.cmd("MAIL FROM:<a@example.test>")      # the reply may still get through
        if r.code == 250:
            r = c.cmd("RCPT TO:<b@example.test>")
        assert r.code == 421, r
        assert c.at_eof()
    assert up.all_messages == []

"""Line endings: every bare_newline policy against CRLF, bare LF and bare CR devices.

A command line ends at LF under every policy (a CR before it optional), so a device that
ends its lines with a bare LF is answered at once instead of waiting for a CRLF that never
comes: `normalize` and `accept` take the line, `reject` refuses it with 500 5.5.2. In the
body only `accept` lets a bare LF end lines (and LF "." LF end the data). Whatever the
device sends, the upstream receives CRLF-only, dot-stuffed lines.
"""
import re

import pytest

BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")
POLICIES = ["normalize", "reject", "accept"]


def clean_wire(conn):
    m = BARE.search(bytes(conn.raw_tls))
    return m is None


def open_data(c):
    c.read_reply()
    c.expect("EHLO d", 250)
    c.expect("MAIL FROM:<a@example.test>", 250)
    c.expect("RCPT TO:<b@example.test>", 250)
    c.expect("DATA", 354)


def session(proxy, upstream, policy):
    up = upstream("starttls")
    return up, proxy(up, proxy={"bare_newline": policy})


@pytest.mark.parametrize("policy", POLICIES)
def test_crlf_device_works_under_every_policy(upstream, proxy, policy):
    up, px = session(proxy, upstream, policy)
    with px.client() as c:
        c.read_reply()
        r = c.send_mail("a@example.test", ["b@example.test"], b"Subject: t\r\n\r\nhi\r\n.\r\n")
        assert r.code == 250
        c.expect("QUIT", 221)
    assert up.wait_messages(1)
    assert up.messages[0].raw == b"Subject: t\r\n\r\nhi\r\n"
    assert clean_wire(up.connections[0])


@pytest.mark.parametrize("policy", ["normalize", "accept"])
def test_lf_command_lines_are_taken_and_sent_upstream_with_crlf(upstream, proxy, policy):
    up, px = session(proxy, upstream, policy)
    with px.client(timeout=5) as c:
        c.read_reply()
        c.send(b"HELO p.lan\n")
        r = c.read_reply()
        assert r.code == 250, r
        c.send(b"MAIL FROM:<a@example.test>\nRCPT TO:<b@example.test>\r\nNOOP\n")
        assert [c.read_reply().code for _ in range(3)] == [250, 250, 250]
    conn = up.connections[0]
    assert conn.verbs(True)[1:4] == ["MAIL", "RCPT", "NOOP"]
    assert clean_wire(conn)


def test_reject_answers_an_lf_command_line_at_once_with_500(upstream, proxy):
    up, px = session(proxy, upstream, "reject")
    with px.client(timeout=5) as c:
        c.read_reply()
        c.send(b"HELO p.lan\n")
        r = c.read_reply()            # at once, not after the 300 s timeout
        assert r.code == 500 and r.lines[0].startswith("5.5.2"), r
        assert "bare LF" in r.text
        c.send(b"MAIL FROM:<a@example.test>\nNOOP\r\n")
        assert c.read_reply().code == 500
        c.expect("HELO p.lan", 250)
        c.expect("NOOP", 250)
    assert "MAIL" not in up.connections[0].verbs()


@pytest.mark.parametrize("policy", POLICIES)
def test_bare_cr_in_a_command_is_refused_under_every_policy(upstream, proxy, policy):
    up, px = session(proxy, upstream, policy)
    with px.client(timeout=5) as c:
        c.read_reply()
        c.expect("EHLO d", 250)
        r = c.cmd(b"MAIL FROM:<a@example.test>\rRCPT TO:<evil@example.test>")
        assert r.code == 500 and r.lines[0].startswith("5.5.2"), r
    assert b"evil" not in up.connections[0].transcript


def test_accept_whole_lf_only_session_from_greeting_to_quit(upstream, proxy):
    up, px = session(proxy, upstream, "accept")
    body = b"Subject: scan\n\nline one\n..leading dot\n\nlast\n"
    with px.client(timeout=5) as c:
        c.read_reply()
        c.send(b"HELO printer.lan\n")
        assert c.read_reply().code == 250
        c.send(b"MAIL FROM:<scanner@example.test>\n")
        assert c.read_reply().code == 250
        c.send(b"RCPT TO:<office@example.test>\n")
        assert c.read_reply().code == 250
        c.send(b"DATA\n")
        assert c.read_reply().code == 354
        c.send(body + b".\n")
        r = c.read_reply()
        assert r.code == 250 and "queued as" in r.text, r
        c.send(b"QUIT\n")
        assert c.read_reply().code == 221
        assert c.at_eof()
    assert up.wait_messages(1)
    m, = up.messages
    assert m.raw == b"Subject: scan\r\n\r\nline one\r\n..leading dot\r\n\r\nlast\r\n"
    assert m.body == b"Subject: scan\r\n\r\nline one\r\n.leading dot\r\n\r\nlast\r\n"
    assert clean_wire(up.connections[0])


def test_accept_lf_dot_lf_ends_data_and_pipelined_next_command_follows(upstream, proxy):
    up, px = session(proxy, upstream, "accept")
    with px.client(timeout=5) as c:
        open_data(c)
        c.send(b"one\n.\nNOOP\n")
        assert [c.read_reply().code for _ in range(2)] == [250, 250]
    assert up.wait_messages(1)
    assert up.messages[0].raw == b"one\r\n"


@pytest.mark.parametrize("policy", ["normalize", "reject"])
def test_lf_dot_lf_never_ends_the_data_outside_accept(upstream, proxy, policy):
    """Only `accept` trusts an LF-framed end of data; elsewhere it is content (smuggling)."""
    up, px = session(proxy, upstream, policy)
    with px.client(timeout=5) as c:
        open_data(c)
        c.send(b"one\n.\nNOOP\n")
        c.sock.settimeout(1.0)
        with pytest.raises(OSError):          # no reply: still in the body
            c.read_reply()
        c.sock.settimeout(5)
        c.send(b"\r\n.\r\n")
        r = c.read_reply()
    if policy == "normalize":
        assert r.code == 250
        assert up.wait_messages(1)
        assert up.messages[0].raw == b"one\r\n..\r\nNOOP\r\n\r\n"
    else:
        assert r.code == 550
        assert up.messages == []

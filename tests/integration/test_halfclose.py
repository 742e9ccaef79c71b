"""A device that shuts down its sending side still gets every reply it is owed.

EOF from the client means "no more commands", not "stop answering": many embedded stacks
(and `nc -N`) send the final dot, often QUIT, then FIN. If they lose the 250 they retry and
the recipient gets the message twice.
"""
import socket

import pytest

from smtpwire import Client


def half_close(c):
    c.sock.shutdown(socket.SHUT_WR)


def replies_until_eof(c, timeout=10):
    """Every reply the proxy sends until it closes."""
    out = []
    assert c.at_eof(timeout), "proxy did not close after the client's FIN"
    while c.buf:
        out.append(c.read_reply())
    return out


def greet_and_open(c):
    c.read_reply()
    c.expect("EHLO device.test", 250)
    c.expect("MAIL FROM:<a@example.test>", 250)
    c.expect("RCPT TO:<b@example.test>", 250)
    c.expect("DATA", 354)


@pytest.mark.parametrize("tail", [b"", b"QUIT\r\n"], ids=["dot+fin", "dot+quit+fin"])
def test_fin_after_the_dot_still_gets_the_upstream_reply(relay, tail):
    up, px = relay
    with px.client() as c:
        greet_and_open(c)
        c.send(b"Subject: half-close\r\n\r\nbody\r\n.\r\n" + tail)
        half_close(c)
        got = replies_until_eof(c)
    codes = [r.code for r in got]
    assert codes == ([250, 221] if tail else [250]), got
    assert "queued as" in got[0].first
    assert up.wait_messages(1) and len(up.all_messages) == 1
    m, = px.wait_event("message", result="ok")
    assert m["reply"].startswith("250")


def test_pipelined_second_transaction_and_fin_get_every_reply(relay):
    up, px = relay
    with px.client() as c:
        greet_and_open(c)
        c.send(b"first\r\n.\r\nMAIL FROM:<c@example.test>\r\nRCPT TO:<d@example.test>\r\n"
               b"DATA\r\nsecond\r\n.\r\nQUIT\r\n")
        half_close(c)
        got = replies_until_eof(c)
    assert [r.code for r in got] == [250, 250, 250, 354, 250, 221], got
    assert up.wait_messages(2)
    assert [m.body for m in up.all_messages] == [b"first\r\n", b"second\r\n"]


def test_fin_after_pipelined_commands_gets_their_replies(relay):
    up, px = relay
    with px.client() as c:
        c.read_reply()
        c.send(b"EHLO d\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nNOOP\r\n")
        half_close(c)
        got = replies_until_eof(c)
    assert [r.code for r in got] == [250, 250, 250, 250], got
    assert up.messages == []


@pytest.mark.parametrize("body", [b"", b"partial body\r\nno dot", b"x" * 200000],
                         ids=["empty", "partial", "large"])
def test_fin_in_the_middle_of_the_body_aborts_without_the_dot(relay, body):
    up, px = relay
    with px.client() as c:
        greet_and_open(c)
        c.send(body)
        half_close(c)
        assert replies_until_eof(c) == []
    assert up.wait_closed()
    assert up.all_messages == []
    m, = px.wait_event("message", result="aborted")
    assert "client left during DATA" in m["reply"]


def test_fin_before_the_greeting_closes_quietly(relay):
    up, px = relay
    c = Client(px.port)
    half_close(c)
    assert c.at_eof()
    c.close()
    px.wait_event("session.close")
    assert up.all_messages == []

"""DATA: streaming, strict framing, bare CR/LF policy, smuggling, upstream's own replies."""
import re
import smtplib
import threading

import pytest

from smtpwire import REPLY_LINE

BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")
SMUGGLE = b"MAIL FROM:<evil@example.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\nsmuggled\r\n"


def assert_clean_wire(conn):
    """The upstream never received a bare CR or LF."""
    m = BARE.search(bytes(conn.raw_tls))
    assert m is None, "bare CR/LF upstream near %r" % conn.raw_tls[max(0, m.start() - 20):m.end() + 20]


def only_reply_then_eof(c, code):
    """QUIT; everything left on the wire must be exactly one reply of `code`, then EOF."""
    c.send(b"QUIT\r\n")
    assert c.at_eof()
    rest = bytes(c.buf)
    lines = rest.split(b"\r\n")
    assert lines[-1] == b"" and all(REPLY_LINE.match(l + b"\r\n") for l in lines[:-1]), rest
    assert [l[:4] for l in lines[:-1]] == [b"%d " % code], "extra replies: %r" % rest


def open_data(px):
    c = px.client()
    c.read_reply()
    c.expect("EHLO d", 250)
    c.expect("MAIL FROM:<a@example.test>", 250)
    c.expect("RCPT TO:<b@example.test>", 250)
    c.expect("DATA", 354)
    return c


# ---- bare CR / LF policy -------------------------------------------------------------------

NORMALIZE = [
    (b"Subject: x\r\n\r\nline1\nline2\r\n", b"Subject: x\r\n\r\nline1\r\nline2\r\n"),
    (b"a\rb\r\n", b"a b\r\n"),
    (b"a\n.\nb\r\n", b"a\r\n..\r\nb\r\n"),
    (b"a\r\n.\nb\r\n", b"a\r\n..\r\nb\r\n"),
    (b"a\n.\r\nb\r\n", b"a\r\n..\r\nb\r\n"),
    (b"a\r.\rb\r\n", b"a . b\r\n"),
    (b"trailing bare lf\n\r\n", b"trailing bare lf\r\n\r\n"),
    (b"trailing cr\r\r\n", b"trailing cr \r\n"),
]


@pytest.mark.parametrize("body,wire", NORMALIZE)
def test_normalize_makes_bare_cr_lf_safe_and_keeps_one_message(relay, body, wire):
    up, px = relay
    with open_data(px) as c:
        c.send(body + b".\r\n")
        assert c.read_reply().code == 250
        only_reply_then_eof(c, 221)
    assert up.wait_closed()
    m, = up.all_messages
    assert m.raw == wire
    assert_clean_wire(up.connections[0])


SMUGGLE_ENDS = [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r", b"\r.\r\n", b"\r\n.\r"]


@pytest.mark.parametrize("fake_end", SMUGGLE_ENDS, ids=repr)
@pytest.mark.parametrize("policy", ["normalize", "reject"])
def test_smuggled_second_message_stays_inside_the_first(upstream, proxy, policy, fake_end):
    up = upstream("starttls")
    px = proxy(up, proxy={"bare_newline": policy})
    with open_data(px) as c:
        c.send(b"Subject: carrier\r\n\r\nbody" + fake_end + SMUGGLE + b".\r\n")
        r = c.read_reply()
        if policy == "normalize":
            assert r.code == 250, r
        else:
            assert r.code == 550 and r.lines[0].startswith("5.5.2"), r
        only_reply_then_eof(c, 221)
    assert up.wait_closed()
    for conn in up.connections:
        assert "evil@example.test" not in [l.decode(errors="replace") for _, l in conn.commands
                                           if l.upper().startswith(b"MAIL")]
        assert_clean_wire(conn)
    assert len(up.all_messages) <= 1
    if policy == "normalize":
        m, = up.messages
        assert m.rcpts == ["b@example.test"] and b"smuggled" in m.body
    else:
        assert up.messages == []


@pytest.mark.parametrize("body", [b"a\nb\r\n", b"a\rb\r\n", b"x\r\n.\ny\r\n"], ids=repr)
def test_reject_policy_refuses_bare_cr_lf_after_real_end(upstream, proxy, body):
    up = upstream("starttls")
    px = proxy(up, proxy={"bare_newline": "reject"})
    with open_data(px) as c:
        c.send(body + b".\r\n")
        r = c.read_reply()
        assert r.code == 550 and r.lines[0].startswith("5.5.2"), r
        only_reply_then_eof(c, 221)
    assert up.wait_closed()
    assert up.messages == []


def test_reject_policy_delivers_clean_message(upstream, proxy):
    up = upstream("starttls")
    px = proxy(up, proxy={"bare_newline": "reject"})
    with open_data(px) as c:
        c.send(b"clean\r\n..dot\r\n.\r\n")
        assert c.read_reply().code == 250
    assert up.wait_messages(1) and up.messages[0].raw == b"clean\r\n..dot\r\n"


# ---- upstream's replies ----------------------------------------------------------------------

@pytest.mark.parametrize("reply", [b"554 5.7.1 rejected as spam\r\n",
                                   b"451 4.3.0 try again later\r\n",
                                   b"250 2.0.0 Ok: queued as UPSTREAM42\r\n"])
def test_end_of_data_reply_is_upstreams_own(upstream, proxy, reply):
    up = upstream("starttls", override={"dot": reply})
    px = proxy(up)
    with open_data(px) as c:
        c.send(b"x\r\n.\r\n")
        r = c.read_reply()
    assert r.raw == reply


def test_queue_id_reaches_client(relay):
    up, px = relay
    with open_data(px) as c:
        c.send(b"x\r\n.\r\n")
        r = c.read_reply()
    m, = up.messages
    assert r.raw == m.reply


@pytest.mark.parametrize("reply", [b"25O ok\r\n", b"250 ok\n", b"250-ok\r\n550 no\r\n",
                                   b"2500 ok\r\n", b"\r\n"], ids=repr)
def test_malformed_end_of_data_reply_gives_451(upstream, proxy, reply):
    up = upstream("starttls", override={"dot": reply})
    px = proxy(up)
    with open_data(px) as c:
        c.send(b"x\r\n.\r\n")
        r = c.read_reply()
        assert r.code == 451, r


@pytest.mark.parametrize("stage", ["mail", "rcpt"])
def test_malformed_reply_in_transaction_gives_4xx(upstream, proxy, stage):
    up = upstream("starttls", override={stage: b"25O ok\r\n"})
    px = proxy(up)
    with px.client() as c:
        c.read_reply()
        c.expect("EHLO d", 250)
        r = c.cmd("MAIL FROM:<a@example.test>")
        if stage == "rcpt":
            assert r.code == 250
            r = c.cmd("RCPT TO:<b@example.test>")
        assert 400 <= r.code < 500, r


def test_data_refused_by_upstream_is_relayed(upstream, proxy):
    up = upstream("starttls", override={"data": b"554 5.5.1 Error: no valid recipients\r\n"})
    px = proxy(up)
    with px.client() as c:
        c.read_reply()
        c.expect("EHLO d", 250)
        c.expect("MAIL FROM:<a@example.test>", 250)
        c.expect("RCPT TO:<b@example.test>", 250)
        assert c.cmd("DATA").first == "554 5.5.1 Error: no valid recipients"
        c.expect("RSET", 250)


def test_drip_fed_upstream_replies_are_reassembled(upstream, proxy):
    up = upstream("starttls", drip=True)
    px = proxy(up)
    with open_data(px) as c:
        c.send(b"drip\r\n.\r\n")
        r = c.read_reply()
    assert r.raw == up.messages[0].reply


# ---- losing a side ---------------------------------------------------------------------------

BIG = b"".join(b"%07d %s\r\n" % (i, b"x" * 60) for i in range(40000))   # ~2.7 MB


@pytest.mark.parametrize("how,stage", [("close_at", "body"), ("rst_at", "body"),
                                       ("close_at", "dot"), ("close_at", "data")])
def test_upstream_lost_during_data_gives_451(upstream, proxy, how, stage):
    up = upstream("starttls", **{how: stage})
    px = proxy(up)
    c = px.client()
    c.read_reply()
    c.expect("EHLO d", 250)
    c.expect("MAIL FROM:<a@example.test>", 250)
    c.expect("RCPT TO:<b@example.test>", 250)
    r = c.cmd("DATA")
    if r.code == 354:
        try:
            c.send(BIG + b".\r\n")
        except OSError:
            pass
        r = c.read_reply()
    c.close()
    wanted = (421, 451) if stage == "data" else (451,)  # 354 and EOF may come in one read
    assert r.code in wanted and r.lines[0].startswith("4.4."), r


def test_client_lost_mid_data_never_sends_final_dot(relay):
    up, px = relay
    c = open_data(px)
    c.send(b"Subject: half\r\n\r\n" + BIG[:100000])     # ends with CRLF: one dot from a mail
    c.close()
    assert up.wait_closed(), "upstream connection kept open after the client left"
    conn, = up.connections
    assert up.all_messages == []
    assert not conn.raw_tls.endswith(b"\r\n.\r\n")


def test_client_leaving_right_after_dot_still_gets_message_logged(relay):
    up, px = relay
    c = open_data(px)
    c.send(b"leaving\r\n.\r\n")
    c.close()
    assert up.wait_messages(1)
    msg = px.wait_event("message")
    assert msg and msg[0]["result"] == "ok" and up.messages[0].reply.decode().strip() in \
        msg[0]["reply"]


# ---- volume ----------------------------------------------------------------------------------

def test_20mb_message_arrives_byte_for_byte(relay):
    up, px = relay
    line = bytes(range(33, 127)) + b"\r\n"
    parts, size = [], 0
    i = 0
    while size < 20 * 1024 * 1024:
        p = (b".." if i % 97 == 0 else b"") + b"%08d " % i + line   # some stuffed dots
        parts.append(p)
        size += len(p)
        i += 1
    raw = b"".join(parts)
    with open_data(px) as c:
        c.sock.settimeout(60)
        c.send(raw + b".\r\n")
        assert c.read_reply().code == 250
    assert up.wait_messages(1, timeout=30)
    m, = up.messages
    assert len(m.raw) == len(raw) and m.raw == raw


def test_50_concurrent_clients_each_deliver(relay):
    up, px = relay
    errors = []

    def one(i):
        try:
            with smtplib.SMTP("127.0.0.1", px.port, local_hostname="d%d.test" % i,
                              timeout=20) as s:
                s.sendmail("c%d@example.test" % i, ["r%d@example.test" % i],
                           b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append((i, repr(e)))

    ts = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert errors == []
    assert up.wait_messages(50, timeout=20)
    got = sorted(m.body for m in up.messages)
    assert got == sorted(b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i) for i in range(50))
    for m in up.messages:
        assert m.rcpts == [m.mail_from.replace("c", "r", 1)]


@pytest.mark.parametrize("policy_body", [("reject", b"a\nb\r\n"), ("normalize", b"x" * 2048 + b"\r\n")],
                         ids=["bare-lf-rejected", "over-size"])
def test_after_a_refused_message_the_next_command_gets_421_and_quit_221(upstream, proxy,
                                                                        policy_body):
    """As the config reference says: no 421 out of the blue after the 550/552; the next
    command gets it (the upstream was dropped to abort the message); QUIT gets 221."""
    policy, body = policy_body
    up = upstream("starttls")
    px = proxy(up, proxy={"bare_newline": policy}, limits={"max_message_size": "1024"})
    with open_data(px) as c:
        c.send(body + b".\r\n")
        assert c.read_reply().code in (550, 552)
        c.sock.settimeout(1.0)
        with pytest.raises(OSError):
            c.read_reply()                 # nothing unprompted
        c.sock.settimeout(10)
        r = c.cmd("NOOP")
        assert r.code == 421 and r.lines[0].startswith("4.4.2"), r
        assert c.at_eof()
    with open_data(px) as c:
        c.send(body + b".\r\n")
        assert c.read_reply().code in (550, 552)
        only_reply_then_eof(c, 221)
    assert up.messages == []

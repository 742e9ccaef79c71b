"""Command phase: EHLO/HELO from cached capabilities, pipelining, line limits, clients."""
import smtplib

from conftest import swaks

PASSED_ON = {"PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "DSN"}


def keywords(reply):
    return {l.split()[0].split("=")[0].upper() for l in reply.lines[1:]}


def test_ehlo_is_answered_from_cache_with_rewritten_capabilities(relay):
    up, px = relay
    with px.client() as c:
        c.read_reply()
        r = c.expect("EHLO device.test", 250)
    assert r.lines[0].split()[0] == "proxy.test"
    kw = keywords(r)
    assert PASSED_ON <= kw, r.text
    assert "STARTTLS" not in kw and "CHUNKING" not in kw
    assert "SIZE 52428800" in r.lines[1:]
    assert "AUTH" in kw                                   # pass-through policy
    assert up.connections[0].verbs(True) == ["EHLO"]      # not forwarded


def test_helo_gets_one_line_250(relay):
    up, px = relay
    with px.client() as c:
        c.read_reply()
        r = c.expect("HELO device.test", 250)
        assert r.raw.count(b"\r\n") == 1 and r.raw.startswith(b"250 ")
        c.expect("MAIL FROM:<a@example.test>", 250)
    assert up.connections[0].verbs(True)[:2] == ["EHLO", "MAIL"]


def test_ehlo_mid_transaction_resets_upstream(relay):
    up, px = relay
    with px.client() as c:
        c.read_reply()
        c.expect("EHLO d", 250)
        c.expect("MAIL FROM:<a@example.test>", 250)
        c.expect("RCPT TO:<b@example.test>", 250)
        c.expect("EHLO d", 250)
        c.expect("MAIL FROM:<c@example.test>", 250)      # not a nested MAIL upstream
        c.expect("RCPT TO:<d@example.test>", 250)
        c.expect("DATA", 354)
        c.send(b"x\r\n.\r\n")
        assert c.read_reply().code == 250
    verbs = up.connections[0].verbs(True)
    assert "RSET" in verbs[verbs.index("RCPT"):verbs.index("MAIL", verbs.index("RCPT"))]
    m, = up.messages
    assert m.mail_from == "c@example.test" and m.rcpts == ["d@example.test"]


def test_pipelined_commands_get_replies_in_order(upstream, proxy):
    up = upstream("starttls", rcpt_replies={"nobody@example.test":
                                            b"550 5.1.1 <nobody@example.test>: unknown\r\n"})
    px = proxy(up)
    with px.client() as c:
        c.read_reply()
        c.send(b"EHLO d\r\nNOOP\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\n"
               b"RCPT TO:<nobody@example.test>\r\nRCPT TO:<c@example.test>\r\nDATA\r\n")
        replies = [c.read_reply() for _ in range(7)]
        assert [r.code for r in replies] == [250, 250, 250, 250, 550, 250, 354]
        assert replies[4].first == "550 5.1.1 <nobody@example.test>: unknown"
        c.send(b"pipelined\r\n.\r\nMAIL FROM:<e@example.test>\r\nRCPT TO:<f@example.test>\r\n"
               b"DATA\r\n")
        assert [c.read_reply().code for _ in range(4)] == [250, 250, 250, 354]
        c.send(b"second\r\n.\r\nQUIT\r\n")
        assert [c.read_reply().code for _ in range(2)] == [250, 221]
    assert [m.body for m in up.messages] == [b"pipelined\r\n", b"second\r\n"]
    assert up.messages[0].rcpts == ["b@example.test", "c@example.test"]


def test_overlong_command_line_gets_500_and_session_continues(relay):
    up, px = relay
    with px.client() as c:
        c.read_reply()
        c.expect("EHLO d", 250)
        r = c.cmd(b"MAIL FROM:<" + b"a" * 5000 + b"@example.test>")
        assert r.code == 500 and r.lines[0].startswith("5.5.2"), r
        c.expect("NOOP", 250)
        c.expect("MAIL FROM:<a@example.test>", 250)
        r = c.cmd(b"RCPT TO:<b@example.test> " + b"X" * 8000)
        assert r.code == 500 and r.lines[0].startswith("5.5.2"), r
        c.expect("RCPT TO:<b@example.test>", 250)
    assert all(len(l) <= 4096 for _, l in up.connections[0].commands)


def test_command_line_of_1000_bytes_is_accepted(relay):
    up, px = relay
    with px.client() as c:
        c.read_reply()
        c.expect("EHLO d", 250)
        c.expect(b"MAIL FROM:<" + b"a" * 960 + b"@example.test>", 250)


def test_bare_lf_or_cr_in_command_line_gets_500(relay):
    up, px = relay
    with px.client() as c:
        c.read_reply()
        c.expect("EHLO d", 250)
        for sep in (b"\n", b"\r"):
            r = c.cmd(b"MAIL FROM:<a@example.test>" + sep + b"RCPT TO:<evil@example.test>")
            assert r.code == 500 and r.lines[0].startswith("5.5.2"), r
        c.expect("NOOP", 250)
    conn = up.connections[0]
    assert "MAIL" not in conn.verbs() and "RCPT" not in conn.verbs()
    assert b"evil" not in conn.transcript


def test_smtplib_delivers_a_message(relay):
    up, px = relay
    with smtplib.SMTP("127.0.0.1", px.port, local_hostname="device.test", timeout=10) as s:
        s.sendmail("a@example.test", ["b@example.test"],
                   b"Subject: smtplib\r\n\r\nhello\r\n.dot\r\n")
    assert up.wait_messages(1)
    m, = up.messages
    assert m.body == b"Subject: smtplib\r\n\r\nhello\r\n.dot\r\n"
    assert m.raw == b"Subject: smtplib\r\n\r\nhello\r\n..dot\r\n"


def test_swaks_delivers_a_message_with_pipelining(relay):
    up, px = relay
    p = swaks(px.port, "--pipeline", "--header", "Subject: via swaks", "--body", "swaks body")
    assert p.returncode == 0, p.stdout + p.stderr
    assert up.wait_messages(1)
    m, = up.messages
    assert m.mail_from == "device@example.test" and m.rcpts == ["rcpt@example.test"]
    assert b"Subject: via swaks\r\n" in m.body and b"swaks body" in m.body
    assert up.connections[0].ehlo == "proxy.test"


def test_quit_is_answered_and_closes(relay):
    up, px = relay
    with px.client() as c:
        c.read_reply()
        c.expect("QUIT", 221)
        assert c.at_eof()

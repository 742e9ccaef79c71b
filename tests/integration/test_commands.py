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
    assert up.connections[0].verbs(True).count("EHLO") == 1   # ours only: not forwarded


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


def test_bare_cr_in_command_line_gets_500(relay):
    # (A bare LF ends a command line: see test_line_endings.py.)
    up, px = relay
    with px.client() as c:
        c.read_reply()
        c.expect("EHLO d", 250)
        r = c.cmd(b"MAIL FROM:<a@example.test>\rRCPT TO:<evil@example.test>")
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


def test_bare_helo_and_ehlo_name_their_own_verb(relay):
    up, px = relay
    with px.client() as c:
        c.read_reply()
        assert c.expect("HELO", 501).first == "501 5.5.4 Syntax: HELO hostname"
        assert c.expect("EHLO", 501).first == "501 5.5.4 Syntax: EHLO hostname"


def test_vrfy_expn_help_are_answered_locally_never_relayed(relay):
    up, px = relay
    with px.client() as c:
        c.read_reply()
        c.expect("EHLO d", 250)
        r = c.expect("VRFY postmaster", 252)
        assert r.lines[0].startswith("2.5.0")
        r = c.expect("EXPN staff", 502)
        assert r.lines[0].startswith("5.5.1")
        r = c.expect("HELP", 214)
        assert "smtp-tls-proxy" in r.text
        c.expect("HELP MAIL", 214)
        c.expect("QUIT", 221)
    verbs = up.connections[0].verbs()
    assert not {"VRFY", "EXPN", "HELP"} & set(verbs), verbs
    assert b"postmaster" not in up.connections[0].transcript


def test_452_for_too_many_recipients_is_not_an_error_that_ends_the_session(upstream, proxy):
    """150 pipelined recipients, max_recipients 100, max_errors 20: the 100 are kept."""
    up = upstream("starttls")
    px = proxy(up, limits={"max_recipients": "100", "max_errors": "20"})
    rcpts = ["r%d@example.test" % i for i in range(150)]
    with px.client(timeout=20) as c:
        c.read_reply()
        c.expect("EHLO d", 250)
        c.expect("MAIL FROM:<a@example.test>", 250)
        c.send(b"".join(b"RCPT TO:<%s>\r\n" % r.encode() for r in rcpts))
        codes = [c.read_reply().code for _ in rcpts]
        assert codes == [250] * 100 + [452] * 50
        c.expect("DATA", 354)
        c.send(b"x\r\n.\r\n")
        assert c.read_reply().code == 250
        c.expect("QUIT", 221)
    assert up.wait_messages(1)
    assert len(up.messages[0].rcpts) == 100


def test_silent_device_after_greeting_gets_421_after_first_command_timeout(upstream, proxy):
    up = upstream("starttls")
    px = proxy(up, proxy={"timeout": "300", "first_command_timeout": "1"})
    with px.client(timeout=30) as c:
        c.read_reply()
        r = c.read_reply()            # after ~1 s, not 300
        assert r.code == 421 and r.lines[0].startswith("4.4.2"), r
        assert c.at_eof()
    close, = px.wait_event("session.close")
    assert close["reason"] == "first-command-timeout"
    assert up.wait_closed()


def test_first_command_timeout_ends_with_the_first_command(upstream, proxy):
    up = upstream("starttls")
    px = proxy(up, proxy={"timeout": "10", "first_command_timeout": "1"})
    with px.client(timeout=30) as c:
        c.read_reply()
        c.expect("EHLO d", 250)
        c.sock.settimeout(2.5)          # past first_command_timeout, well within timeout
        import socket
        try:
            r = c.read_reply()
            raise AssertionError("unexpected reply %r" % r)
        except socket.timeout:
            pass
        c.sock.settimeout(10)
        c.expect("NOOP", 250)

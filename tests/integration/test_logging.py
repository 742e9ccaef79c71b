"""Log lines: the handshake report, message results, session close, text and JSON formats."""
import hashlib
import json
import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization

HANDSHAKE_KEYS = ["client", "upstream", "addr", "version", "cipher", "group", "subject", "issuer",
                  "not_after", "fingerprint", "verify", "sni", "resumed", "ms"]


def deliver(px, body=b"hello\r\n.\r\n", rcpts=("b@example.test",)):
    with px.client() as c:
        c.read_reply()
        r = c.send_mail("a@example.test", list(rcpts), body)
        c.expect("QUIT", 221)
        assert c.at_eof()
    return r


def test_handshake_line_has_every_field(upstream, proxy, certs):
    up = upstream("starttls")
    px = proxy(up)
    with px.client() as c:
        c.read_reply()
        local = "127.0.0.1:%d" % c.sock.getsockname()[1]
    hs, = px.wait_event("tls.handshake")
    missing = [k for k in HANDSHAKE_KEYS if k not in hs]
    assert not missing, "missing %s in %r" % (missing, hs)
    assert hs["level"] == "info" and re.fullmatch(r"[0-9a-f]+", hs["sid"])
    assert hs["client"] == local
    assert hs["upstream"] == "default" and hs["host"] == "127.0.0.1" and hs["device"] == "-"
    assert hs["addr"] == "127.0.0.1:%d" % up.port
    assert hs["version"] == up.connections[0].tls_version
    assert hs["cipher"] == up.connections[0].cipher
    assert hs["group"]
    assert "mail.test" in hs["subject"] and "Test Root CA" in hs["issuer"]
    cert = x509.load_pem_x509_certificate(open(certs["good"][0], "rb").read())
    assert str(cert.not_valid_after.year) in hs["not_after"]
    fp = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    assert hs["fingerprint"].lower().replace(":", "") == "sha256" + fp
    assert hs["verify"] == "ok" and hs["sni"] == "mail.test"
    assert hs["resumed"] in ("yes", "no") and int(hs["ms"]) >= 0


def test_second_session_resumes_tls(relay):
    up, px = relay
    for _ in range(2):
        with px.client() as c:
            c.read_reply()
            c.expect("QUIT", 221)
            c.at_eof()
    hs = px.wait_event("tls.handshake", n=2)
    assert [h["resumed"] for h in hs] == ["no", "yes"]
    assert up.wait_closed() and up.connections[1].resumed


def test_session_lines_share_one_sid(relay):
    up, px = relay
    deliver(px)
    close = px.wait_event("session.close")
    assert close
    sid = close[0]["sid"]
    events = [d["event"] for d in px.log_lines() if d.get("sid") == sid]
    for e in ("session.open", "tls.handshake", "message", "session.close"):
        assert e in events, events


def test_message_and_close_lines(relay):
    up, px = relay
    body = b"Subject: x\r\n\r\nhello\r\n"
    deliver(px, body + b".\r\n", rcpts=("b@example.test", "c@example.test"))
    msg, = px.wait_event("message")
    m, = up.messages
    assert "a@example.test" in msg["from"]
    assert msg["rcpts"] == "2"
    assert len(body) <= int(msg["bytes"]) <= len(body) + 3
    assert msg["reply"] == m.reply.decode().rstrip("\r\n")
    assert msg["result"] == "ok"
    close, = px.wait_event("session.close")
    for k in ("duration_ms", "in", "out", "reason"):
        assert k in close, close
    assert int(close["duration_ms"]) >= 0 and int(close["in"]) > len(body)
    assert int(close["out"]) > 0
    opened, = px.events("session.open")
    assert opened["client"].startswith("127.0.0.1:")


def test_message_results_permfail_and_tempfail(upstream, proxy):
    for reply, result in ((b"554 5.7.1 no\r\n", "permfail"), (b"451 4.3.0 later\r\n", "tempfail")):
        up = upstream("starttls", override={"dot": reply})
        px = proxy(up)
        assert deliver(px).raw == reply
        msg, = px.wait_event("message")
        assert msg["result"] == result and msg["reply"] == reply.decode().rstrip("\r\n")


def test_client_lost_mid_data_logs_aborted(relay):
    up, px = relay
    c = px.client()
    c.read_reply()
    c.expect("EHLO d", 250)
    c.expect("MAIL FROM:<a@example.test>", 250)
    c.expect("RCPT TO:<b@example.test>", 250)
    c.expect("DATA", 354)
    c.send(b"partial\r\n")
    c.close()
    msg = px.wait_event("message")
    assert msg and msg[0]["result"] == "aborted", msg


def test_every_text_line_parses(relay):
    up, px = relay
    deliver(px)
    px.wait_event("session.close")
    lines = px.log_lines()
    assert lines and not [d for d in lines if "_bad" in d]
    for d in lines:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d.*", d["ts"]), d
        assert "event" in d


def test_json_format_is_one_object_per_line(upstream, proxy):
    up = upstream("starttls")
    px = proxy(up, log={"format": "json"})
    deliver(px)
    px.wait_event("session.close")
    px.stop()
    events = []
    for line in px.stderr().splitlines():
        d = json.loads(line)
        assert {"ts", "level", "event"} <= set(d), d
        events.append(d["event"])
    for e in ("proxy.listen", "session.open", "tls.handshake", "message", "session.close"):
        assert e in events
    hs = [json.loads(l) for l in px.stderr().splitlines() if '"tls.handshake"' in l][0]
    assert all(k in hs for k in HANDSHAKE_KEYS)


def test_upstream_failure_is_logged_with_reason(upstream, proxy):
    up = upstream("starttls", cert="wrongname")
    px = proxy(up)
    with px.client() as c:
        assert c.read_reply().code == 421
    fail = px.wait_event("upstream.fail")
    assert fail and fail[0].get("reason") and "hostname mismatch" in json.dumps(fail[0]).lower()


def test_pipelined_next_transaction_does_not_steal_the_message_line(relay):
    """RFC 2920: MAIL behind the dot; each outcome is logged with its own envelope."""
    up, px = relay
    with px.client() as c:
        c.read_reply()
        c.expect("EHLO d", 250)
        c.expect("MAIL FROM:<first@example.test>", 250)
        c.expect("RCPT TO:<r1@example.test>", 250)
        c.expect("RCPT TO:<r2@example.test>", 250)
        c.expect("DATA", 354)
        c.send(b"body one\r\n.\r\nMAIL FROM:<second@example.test>\r\n"
               b"RCPT TO:<r3@example.test>\r\nDATA\r\n")
        assert [c.read_reply().code for _ in range(4)] == [250, 250, 250, 354]
        c.send(b"two\r\n.\r\nQUIT\r\n")
        assert [c.read_reply().code for _ in range(2)] == [250, 221]
    first, second = px.wait_event("message", n=2)
    assert (first["from"], first["to"], first["rcpts"]) == (
        "first@example.test", "r1@example.test,r2@example.test", "2")
    assert int(first["bytes"]) == len(b"body one\r\n.\r\n")
    assert (second["from"], second["to"], second["rcpts"]) == ("second@example.test",
                                                               "r3@example.test", "1")
    assert int(second["bytes"]) == len(b"two\r\n.\r\n")


def test_message_line_lists_only_accepted_recipients_bounded(upstream, proxy):
    up = upstream("starttls", rcpt_replies={"no@example.test": b"550 5.1.1 unknown\r\n"})
    px = proxy(up)
    rcpts = ["no@example.test"] + ["rcpt%03d-%s@example.test" % (i, "x" * 40) for i in range(30)]
    with px.client() as c:
        c.read_reply()
        c.expect("EHLO d", 250)
        c.expect("MAIL FROM:<a@example.test>", 250)
        c.send(b"".join(b"RCPT TO:<%s>\r\n" % r.encode() for r in rcpts))
        assert [c.read_reply().code for _ in rcpts] == [550] + [250] * 30
        c.expect("DATA", 354)
        c.send(b"x\r\n.\r\n")
        assert c.read_reply().code == 250
    msg, = px.wait_event("message")
    assert msg["rcpts"] == "30"
    listed = msg["to"].split(",")
    assert "no@example.test" not in msg["to"]
    assert listed[0] == rcpts[1]
    assert len(msg["to"]) < 512 and re.search(r"\(\+\d+ more\)$", msg["to"]), msg["to"]
    shown = len(listed) - 1
    assert shown + int(re.search(r"\+(\d+) more", msg["to"]).group(1)) == 30


def test_rset_drops_the_transaction_from_the_log(relay):
    up, px = relay
    with px.client() as c:
        c.read_reply()
        c.expect("EHLO d", 250)
        c.send(b"MAIL FROM:<dropped@example.test>\r\nRCPT TO:<gone@example.test>\r\nRSET\r\n"
               b"MAIL FROM:<kept@example.test>\r\nRCPT TO:<here@example.test>\r\nDATA\r\n")
        assert [c.read_reply().code for _ in range(6)] == [250, 250, 250, 250, 250, 354]
        c.send(b"x\r\n.\r\n")
        assert c.read_reply().code == 250
    msg, = px.wait_event("message")
    assert (msg["from"], msg["to"], msg["rcpts"]) == ("kept@example.test", "here@example.test", "1")


def test_debug_log_shows_each_upstream_preparation_step(upstream, proxy):
    up = upstream("starttls")
    px = proxy(up, log={"level": "debug"})
    deliver(px)
    steps = [(d["from"], d["to"]) for d in px.wait_event("upstream.state", n=6)]
    assert steps == [("resolve", "connect"), ("connect", "greeting"), ("greeting", "ehlo"),
                     ("ehlo", "starttls"), ("starttls", "tls"), ("tls", "ehlo-tls")], steps

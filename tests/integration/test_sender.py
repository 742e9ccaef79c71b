"""force_sender and rewrite_header_from ([device NAME]): the envelope and the From header
the upstream gets, checked in the message the test upstream recorded."""
import os
import re

import pytest

from daemon import PROXY_BIN

SENDER = "scanner@example.com"
# The test clients connect from 127.0.0.1.
SCANNER = {"match": "127.0.0.1", "force_sender": SENDER, "rewrite_header_from": "yes"}


@pytest.fixture
def scanner(upstream, proxy):
    """A proxy whose device profile for 127.0.0.1 rewrites envelope and header."""
    up = upstream("starttls")
    return up, proxy(up, **{"device scanner": dict(SCANNER)})


def open_data(px, mail="MAIL FROM:<scan@lan.test>"):
    """A client of `px` with its DATA accepted (354)."""
    c = px.client(timeout=60)
    c.read_reply()
    c.expect("EHLO device.lan", 250)
    c.expect(mail, 250)
    c.expect("RCPT TO:<office@example.net>", 250)
    c.expect("DATA", 354)
    return c


def deliver(px, body, mail="MAIL FROM:<scan@lan.test> SIZE=%d BODY=8BITMIME"):
    """One message whose body (without the final dot) is sent in one write; its reply."""
    with open_data(px, mail % len(body) if "%d" in mail else mail) as c:
        c.send(body + b".\r\n")
        r = c.read_reply()
        c.send(b"QUIT\r\n")
        c.at_eof()
        return r


def header_of(m):
    """The upstream's message split into its header lines and its body."""
    head, _, body = m.body.partition(b"\r\n\r\n")
    return head.split(b"\r\n"), body


def test_envelope_carries_force_sender_with_every_parameter_kept(scanner):
    up, px = scanner
    body = b"From: scan@lan.test\r\nSubject: s\r\n\r\nx\r\n"
    r = deliver(px, body, "MAIL FROM: <scan@lan.test> SIZE=%d BODY=8BITMIME RET=HDRS "
                "ENVID=scan-42")
    assert r.code == 250, r
    m, = up.messages
    assert m.mail_from == SENDER
    assert m.mail_params == b"SIZE=%d BODY=8BITMIME RET=HDRS ENVID=scan-42" % len(body)
    msg, = px.wait_event("message")
    assert msg["from"] == SENDER and msg["device_from"] == "scan@lan.test", msg


def test_bare_path_quirk_is_rewritten_and_null_path_kept(scanner):
    up, px = scanner
    assert deliver(px, b"Subject: a\r\n\r\nx\r\n", "MAIL FROM:scan@lan.test").code == 250
    assert deliver(px, b"Subject: b\r\n\r\nx\r\n", "MAIL FROM:<>").code == 250
    a, b = up.messages
    assert (a.mail_from, b.mail_from) == (SENDER, "")
    first, second = px.wait_event("message", 2)
    assert first["device_from"] == "scan@lan.test"
    # A notification keeps its null path: nothing was rewritten, so no device_from.
    assert second["from"] == "" and "device_from" not in second


def test_header_from_replaced_and_kept_as_reply_to(scanner):
    up, px = scanner
    assert deliver(px, b"Subject: scan\r\nFrom: \"Scanner 3rd floor\" <scan@lan.test>\r\n"
                   b"To: office@example.net\r\n\r\n..leading dot\r\nend\r\n").code == 250
    m, = up.messages
    assert m.body == (b"Subject: scan\r\nFrom: " + SENDER.encode() + b"\r\n"
                      b"Reply-To: \"Scanner 3rd floor\" <scan@lan.test>\r\n"
                      b"To: office@example.net\r\n\r\n.leading dot\r\nend\r\n")
    # Dot-stuffing still holds on the wire.
    assert b"\r\n..leading dot\r\n" in m.raw


def test_existing_reply_to_is_kept(scanner):
    up, px = scanner
    assert deliver(px, b"From: scan@lan.test\r\nREPLY-TO: helpdesk@lan.test\r\n\r\nx\r\n").code == 250
    head, _ = header_of(up.messages[0])
    assert head == [b"From: " + SENDER.encode(), b"REPLY-TO: helpdesk@lan.test"]


def test_folded_and_encoded_word_from_moves_whole_into_reply_to(scanner):
    up, px = scanner
    value = b" =?utf-8?q?Scanner_=C3=A9tage_3?=\r\n\t<scan@lan.test>"
    assert deliver(px, b"from:" + value + b"\r\nSubject: x\r\n\r\nbody\r\n").code == 250
    head, body = header_of(up.messages[0])
    assert head == [b"From: " + SENDER.encode(), b"Reply-To:" + value.split(b"\r\n")[0],
                    b"\t<scan@lan.test>", b"Subject: x"]
    assert body == b"body\r\n"


def test_message_without_from_gets_one(scanner):
    up, px = scanner
    assert deliver(px, b"Subject: no from\r\n\r\nbody\r\n").code == 250
    assert up.messages[0].body == (b"From: " + SENDER.encode() +
                                   b"\r\nSubject: no from\r\n\r\nbody\r\n")


def test_bare_lf_header_is_normalized_then_rewritten(scanner):
    up, px = scanner
    assert deliver(px, b"From: scan@lan.test\nSubject: lf\n\nbody\r\n").code == 250
    m, = up.messages
    assert m.raw == (b"From: " + SENDER.encode() + b"\r\nReply-To: scan@lan.test\r\n"
                     b"Subject: lf\r\n\r\nbody\r\n")
    assert not re.search(rb"\r(?!\n)|(?<!\r)\n", bytes(up.connections[0].raw_tls))


def test_header_block_over_64k_gets_552_and_nothing_is_delivered(scanner):
    up, px = scanner
    pad = b"".join(b"X-Pad-%05d: %s\r\n" % (i, b"a" * 80) for i in range(800))
    assert len(pad) > 64 * 1024
    r = deliver(px, b"From: scan@lan.test\r\n" + pad + b"\r\nbody\r\n")
    assert r.code == 552 and r.first.startswith("552 5.3.4"), r
    assert up.wait_closed()
    # The upstream's transaction was cut without a final dot: no message at all.
    assert up.all_messages == []
    assert up.connections[0].mail_from is not None
    msg, = px.wait_event("message")
    assert msg["result"] == "rejected", msg


def test_client_gone_inside_the_header_delivers_nothing(scanner):
    up, px = scanner
    with open_data(px) as c:
        c.send(b"From: scan@lan.test\r\nSubject: cut")
    msg, = px.wait_event("message")
    assert msg["result"] == "aborted", msg
    assert up.wait_closed()
    assert up.all_messages == []


def sanitized():
    """ASan keeps freed memory in quarantine, valgrind has its own heap and shadow memory:
    under either, RSS says nothing about what is held."""
    if os.environ.get("VALGRIND") == "1":
        return True
    with open(PROXY_BIN, "rb") as f:
        return b"__asan_init" in f.read()


def worker_hwm_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM for %d" % pid)


def test_20mb_body_streams_byte_exact_without_being_held(scanner):
    up, px = scanner
    pids = px.worker_pids()
    assert pids
    # Warm-up: buffers, TLS and the header path used once before the mark is taken.
    assert deliver(px, b"Subject: warm\r\n\r\nx\r\n").code == 250
    before = {p: worker_hwm_kb(p) for p in pids}
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,;:+-*/=!?\r\n"
    body = b"".join(b"%08d " % i + line for i in range(20 * 1024 * 1024 // (len(line) + 9) + 1))
    assert len(body) >= 20 * 1024 * 1024
    head = b"From: scan@lan.test\r\nSubject: big\r\n\r\n"
    assert deliver(px, head + body).code == 250
    m = up.messages[-1]
    assert m.body == (b"From: " + SENDER.encode() + b"\r\nReply-To: scan@lan.test\r\n"
                      b"Subject: big\r\n\r\n") + body
    growth = max(worker_hwm_kb(p) - before[p] for p in pids)
    print("worker VmHWM growth over a 20 MB message: %d KB" % growth)
    assert growth < 16 * 1024 or sanitized(), growth


def test_client_of_no_profile_is_unchanged(upstream, proxy):
    up = upstream("starttls")
    # The profile matches 127.0.0.2 only; the client comes from 127.0.0.1.
    px = proxy(up, **{"device other": dict(SCANNER, match="127.0.0.2")})
    body = b"From: scan@lan.test\r\nSubject: s\r\n\r\nx\r\n"
    assert deliver(px, body).code == 250
    m, = up.messages
    assert m.mail_from == "scan@lan.test" and m.body == body
    msg, = px.wait_event("message")
    assert msg["from"] == "scan@lan.test" and "device_from" not in msg


def test_force_sender_without_header_rewrite_changes_the_envelope_only(upstream, proxy):
    up = upstream("starttls")
    px = proxy(up, **{"device scanner": dict(SCANNER, rewrite_header_from="no")})
    body = b"From: scan@lan.test\r\nSubject: s\r\n\r\nx\r\n"
    assert deliver(px, body).code == 250
    m, = up.messages
    assert m.mail_from == SENDER and m.body == body

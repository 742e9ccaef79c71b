"""Promise 5: unambiguous framing (no SMTP smuggling).

Each fake end-of-data that smuggling scanners use is followed by a whole second transaction
(MAIL FROM:<evil@...>, RCPT, DATA, a line) and then the real CRLF.CRLF. Each is sent split at
every segment boundary around the fake and the real end (one session per cut, plus one
session that sends every byte in its own segment), under both bare_newline policies. Each
session must give: one reply after the real end (250, or 550 when `reject` sees a bare CR/LF),
exactly one transaction upstream, only CRLF line ends on the upstream's wire, and never the
smuggled MAIL FROM as a command.
"""
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from adv import only_crlf
from smtpwire import REPLY_LINE  # tests/lib, put on sys.path by adv

SMUGGLE = (b"MAIL FROM:<evil@example.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n"
           b"smuggled line\r\n")
PREFIX = b"Subject: carrier\r\n\r\nbody"
VARIANTS = [
    ("LF.LF", b"\n.\n"), ("LF.CRLF", b"\n.\r\n"), ("CRLF.LF", b"\r\n.\n"),
    ("CR.CR", b"\r.\r"), ("CR.CRLF", b"\r.\r\n"), ("CRLF.CR", b"\r\n.\r"),
    ("CRLF-NUL.CRLF", b"\r\n\x00.\r\n"), ("CRLF..CRLF", b"\r\n..\r\n"),
    ("CRLF-SP.CRLF", b"\r\n .\r\n"), ("CRLF.NUL-CRLF", b"\r\n.\x00\r\n"),
    ("CRLF.CR-CRLF", b"\r\n.\r\r\n"), ("LF-LF.LF", b"\n\n.\n"),
    ("start:.LF", None), ("start:.CR", None),
]
START = {"start:.LF": b".\n", "start:.CR": b".\r"}
BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")
WORKERS = 8


def payload(name, fake):
    if name in START:
        head, fake = b"", START[name]
    else:
        head = PREFIX
    data = head + fake + SMUGGLE + b".\r\n"
    assert data.count(b"\r\n.\r\n") + data.startswith(b".\r\n") == 1, "test data has 2 ends"
    return data, len(head), len(head) + len(fake)


def cut_plans(data, fstart, fend):
    """Single cuts around the fake end and around the real end, and one byte-per-segment."""
    n = len(data)
    cuts = sorted(set(range(max(1, fstart - 1), min(n, fend + 2))) |
                  set(range(n - 6, n)))
    return [[c] for c in cuts] + [list(range(1, n))]


def one_session(px, k, data, cuts):
    with px.client(timeout=15) as c:
        assert c.read_reply().code == 220
        c.expect("EHLO d.test", 250)
        c.expect("MAIL FROM:<cut-%d@example.test>" % k, 250)
        c.expect("RCPT TO:<b@example.test>", 250)
        c.expect("DATA", 354)
        c.send_split(data, cuts, pause=0.001 if len(cuts) > 10 else 0.004)
        r = c.read_reply()
        c.send(b"QUIT\r\n")
        assert c.at_eof(10)
        rest = bytes(c.buf)
    lines = rest.split(b"\r\n")
    assert lines[-1] == b"" and all(REPLY_LINE.match(l + b"\r\n") for l in lines[:-1]), rest
    return r.code, [l[:3] for l in lines[:-1]]


@pytest.mark.parametrize("policy", ["normalize", "reject"])
@pytest.mark.parametrize("name,fake", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_fake_end_of_data_split_anywhere_never_smuggles_a_second_transaction(
        upstream, proxy, name, fake, policy):
    data, fstart, fend = payload(name, fake)
    bad = BARE.search(data) is not None
    up = upstream("starttls")
    px = proxy(up, proxy={"bare_newline": policy}, log={"level": "info"})
    plans = cut_plans(data, fstart, fend)
    errors, results = [], {}
    lock = threading.Lock()

    def run(k):
        try:
            res = one_session(px, k, data, plans[k])
            with lock:
                results[k] = res
        except Exception as e:   # noqa: BLE001 - reported with the cut that caused it
            errors.append((plans[k][:3], repr(e)))

    with ThreadPoolExecutor(WORKERS) as ex:
        list(ex.map(run, range(len(plans))))
    assert errors == [], errors[:3]
    want = 550 if policy == "reject" and bad else 250
    for k, (code, rest) in sorted(results.items()):
        assert code == want, "cut %r: %d" % (plans[k][:3], code)
        assert rest == [b"221"], "cut %r: extra replies %r" % (plans[k][:3], rest)
    assert up.wait_closed(15)
    per_from = {}
    for conn in up.connections:
        mails = [l for _, l in conn.commands if l.upper().startswith(b"MAIL")]
        assert len(mails) == 1, "not exactly one MAIL upstream: %r" % mails
        assert b"evil" not in b"".join(l for _, l in conn.commands
                                       if l.upper().startswith((b"MAIL", b"RCPT")))
        assert only_crlf(conn.raw_tls), "bare CR/LF on the upstream's wire"
        per_from[mails[0]] = conn
    assert len(per_from) == len(plans)
    msgs = up.all_messages
    if want == 250:
        assert sorted(m.mail_from for m in msgs) == sorted(
            "cut-%d@example.test" % k for k in range(len(plans)))
        for m in msgs:
            assert m.accepted and m.rcpts == ["b@example.test"]
            assert b"smuggled line" in m.body and b"evil@example.test" in m.body
    else:
        assert msgs == [], "a rejected message was completed upstream"


def test_dot_line_at_body_start_ends_the_data_for_proxy_and_upstream_alike(upstream, proxy):
    """'.' CRLF right after 354 is a real (empty) end of data: what follows is the client's
    own next transaction, and the proxy and the upstream count the same transactions."""
    up = upstream("starttls")
    px = proxy(up)
    with px.client() as c:
        c.read_reply()
        c.expect("EHLO d.test", 250)
        c.expect("MAIL FROM:<first@example.test>", 250)
        c.expect("RCPT TO:<b@example.test>", 250)
        c.expect("DATA", 354)
        c.send(b".\r\n")
        assert c.read_reply().code == 250
        c.send(b"MAIL FROM:<second@example.test>\r\n")
        assert c.read_reply().code == 250
        c.expect("RCPT TO:<b@example.test>", 250)
        c.expect("DATA", 354)
        c.send(b"two\r\n.\r\n")
        assert c.read_reply().code == 250
    assert up.wait_messages(2)
    assert [(m.mail_from, m.raw) for m in up.messages] == [
        ("first@example.test", b""), ("second@example.test", b"two\r\n")]
    assert len(px.wait_event("message", n=2)) == 2

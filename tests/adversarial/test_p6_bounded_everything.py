"""Promise 6: bounded everything.

Line and reply sizes, recipients, message size, sessions (global and per client address),
errors per session, time per step (trickling does not stretch it), body data rate, clients and
upstreams that stop reading, and the memory and descriptors of the workers after hostile load.
"""
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from adv import (EARLY, PROXY_BIN, PASSWORD, USER, b64, expect_421_greeting, open_data, proc_fds,
                 proc_rss_kb, wait_for, wait_upstream_fail)


def session(px, **kw):
    c = px.client(**kw)
    assert c.read_reply().code == 220
    c.expect("EHLO d.test", 250)
    return c


# ---- command lines -------------------------------------------------------------------------------

def test_command_line_of_exactly_4096_bytes_is_taken_and_4097_refused(relay):
    up, px = relay
    with session(px) as c:
        ok = b"NOOP " + b"x" * (4096 - 5)
        c.expect(ok, 250)
        r = c.cmd(ok + b"y")
        assert r.code == 500 and r.lines[0].startswith("5.5.2"), r
        c.expect("NOOP", 250)
    lens = [len(l) for _, l in up.connections[0].commands]
    assert 4096 in lens and max(lens) == 4096


def test_100kb_command_line_split_at_its_cr_is_refused_and_never_forwarded(relay):
    up, px = relay
    with session(px) as c:
        c.send(b"RCPT TO:<" + b"A" * 100000 + b"\r")
        time.sleep(0.05)
        c.send(b"\nNOOP\r\n")
        r = c.read_reply()
        assert r.code == 500 and r.lines[0].startswith("5.5.2"), r
        assert c.read_reply().code == 250              # the session went on
        c.expect("MAIL FROM:<a@example.test>", 250)
    conn = up.connections[0]
    assert b"AAAA" not in conn.transcript and "RCPT" not in conn.verbs()


def test_overlong_line_with_a_command_behind_it_in_one_segment(relay):
    up, px = relay
    with session(px) as c:
        c.send(b"MAIL FROM:<" + b"B" * 5000 + b"@x>\r\nNOOP\r\n")
        assert [c.read_reply().code for _ in range(2)] == [500, 250]
    assert "MAIL" not in up.connections[0].verbs()


# ---- replies from the upstream -------------------------------------------------------------------

BIG_EHLO = b"250-mail.test\r\n" + b"".join(b"250-X-PAD%06d %s\r\n" % (i, b"p" * 80)
                                           for i in range(1100)) + b"250 STARTTLS\r\n"
LONG_LINE = b"250 " + b"L" * 5000 + b"\r\n"


@pytest.mark.parametrize("stage,reply", [
    ("greeting", b"220 " + b"G" * 5000 + b"\r\n"),
    ("ehlo", BIG_EHLO),
    ("tls_ehlo", BIG_EHLO.replace(b"250 STARTTLS", b"250 SIZE 1000")),
    ("tls_ehlo", b"250-mail.test\r\n" + LONG_LINE),
    ("greeting", b"220-" + b"E" * 1000000),            # a reply line that never ends
], ids=["greeting-5000B-line", "ehlo-100kB", "tls-ehlo-100kB", "tls-ehlo-5000B-line",
        "greeting-endless-line"])
def test_oversized_reply_while_preparing_gives_prompt_421(upstream, proxy, stage, reply):
    up = upstream("starttls", override={stage: reply}, io_timeout=5)
    px = proxy(up)
    expect_421_greeting(px, within=8)          # the proxy's timeout is 10 s
    f = wait_upstream_fail(px)
    assert f["reason"] in ("protocol", "no-starttls", "ehlo"), f
    assert px.alive() and not px.events("worker.exit")


@pytest.mark.parametrize("stage,reply", [
    ("mail", LONG_LINE),
    ("rcpt", b"".join(b"250-%s\r\n" % (b"r" * 70) for _ in range(300)) + b"250 ok\r\n"),
    ("dot", b"250 " + b"Q" * 5000 + b"\r\n"),
    ("mail", b"250-" + b"M" * 1000000),
], ids=["mail-5000B-line", "rcpt-22kB-reply", "dot-5000B-line", "mail-endless-line"])
def test_oversized_reply_in_a_transaction_gives_prompt_4xx_never_2xx(upstream, proxy, stage,
                                                                     reply):
    up = upstream("starttls", override={stage: reply}, io_timeout=5)
    px = proxy(up)
    t0 = time.monotonic()
    with session(px) as c:
        r = c.cmd("MAIL FROM:<a@example.test>")
        if stage != "mail":
            assert r.code == 250
            r = c.cmd("RCPT TO:<b@example.test>")
        if stage == "dot":
            assert r.code == 250
            c.expect("DATA", 354)
            c.send(b"x\r\n.\r\n")
            r = c.read_reply()
        assert r.code in (421, 451), r
    assert time.monotonic() - t0 < 8           # the proxy's timeout is 10 s
    assert px.alive() and not px.events("worker.exit")
    if stage == "dot":
        assert px.wait_event("message")[0]["result"] == "tempfail"


# ---- recipients and size -------------------------------------------------------------------------

@pytest.mark.parametrize("pipelined", [False, True], ids=["one-by-one", "pipelined"])
def test_fourth_recipient_over_max_recipients_gets_452_and_stays_local(upstream, proxy,
                                                                      pipelined):
    up = upstream("starttls")
    px = proxy(up, limits={"max_recipients": "3"})
    rcpts = ["r%d@example.test" % i for i in range(1, 6)]
    with session(px) as c:
        c.expect("MAIL FROM:<a@example.test>", 250)
        if pipelined:
            c.send(b"".join(b"RCPT TO:<%s>\r\n" % r.encode() for r in rcpts))
            got = [c.read_reply() for _ in rcpts]
        else:
            got = [c.cmd("RCPT TO:<%s>" % r) for r in rcpts]
        assert [r.code for r in got] == [250, 250, 250, 452, 452], got
        assert got[3].lines[0].startswith("4.5.3")
        c.expect("DATA", 354)
        c.send(b"x\r\n.\r\n")
        assert c.read_reply().code == 250
        c.expect("MAIL FROM:<again@example.test>", 250)   # a new transaction, a new count
        for r in rcpts[:3]:
            c.expect("RCPT TO:<%s>" % r, 250)
        c.expect("RCPT TO:<%s>" % rcpts[3], 452)
    conn = up.connections[0]
    assert conn.verbs().count("RCPT") == 6
    assert b"r4@" not in conn.transcript and b"r5@" not in conn.transcript
    assert up.messages[0].rcpts == rcpts[:3]


def test_mail_with_size_over_max_message_size_gets_552_locally(upstream, proxy):
    up = upstream("starttls")
    px = proxy(up, limits={"max_message_size": "10000"})
    with px.client() as c:
        c.read_reply()
        r = c.expect("EHLO d.test", 250)
        assert "SIZE 10000" in r.lines[1:], r.lines
        r = c.cmd("MAIL FROM:<a@example.test> SIZE=20000")
        assert r.code == 552 and r.lines[0].startswith("5.3.4"), r
        c.expect("MAIL FROM:<a@example.test> SIZE=9000", 250)
    assert up.connections[0].verbs(True).count("MAIL") == 1


@pytest.mark.parametrize("dot", ["dot-in-same-segment", "dot-in-own-segment"])
def test_body_over_max_message_size_gets_552_after_its_end_and_nothing_delivered(
        upstream, proxy, dot):
    up = upstream("starttls")
    px = proxy(up, limits={"max_message_size": "10000"})
    body = b"".join(b"%05d %s\r\n" % (i, b"s" * 93) for i in range(200))     # 20 kB
    with open_data(px) as c:
        if dot == "dot-in-same-segment":
            c.send(body + b".\r\n")
        else:
            c.send(body)
            time.sleep(0.2)
            c.send(b".\r\n")
        r = c.read_reply()
        assert r.code == 552 and r.lines[0].startswith("5.3.4"), r
        c.send(b"QUIT\r\n")
        assert c.at_eof()
    assert up.wait_closed()
    assert up.all_messages == [], "the client was told 552 but the upstream got the message"
    data = bytes(up.connections[0].raw_tls)
    assert b"\r\n.\r\n" not in data[data.find(b"DATA\r\n"):], "final dot sent upstream"
    assert px.wait_event("message")[0]["result"] == "rejected"


def _body_of(n):
    lines = (n - 200) // 100
    body = (b"x" * 98 + b"\r\n") * lines
    body += b"y" * (n - len(body) - 2) + b"\r\n"
    assert len(body) == n
    return body


@pytest.mark.parametrize("n", [10000, 10001, 10002, 10003])
def test_message_size_limit_is_exact(upstream, proxy, n):
    """SIZE 10000 means a message of 10000 bytes (CRLFs included, the final dot not, RFC 1870)
    is taken and one of 10001 is not; and the upstream delivers exactly when the client hears
    250. The dot comes in its own segment, so only the boundary is tested here."""
    up = upstream("starttls")
    px = proxy(up, limits={"max_message_size": "10000"})
    with open_data(px) as c:
        c.send(_body_of(n))
        time.sleep(0.1)
        c.send(b".\r\n")
        r = c.read_reply()
        c.expect("QUIT", 221)
    assert up.wait_closed()
    assert (r.code == 250) == bool(up.messages), (n, r, up.all_messages)
    assert (r.code == 250) == (n <= 10000), (n, r)


# ---- sessions ------------------------------------------------------------------------------------

def test_third_session_from_one_address_gets_421_while_another_address_gets_in(upstream,
                                                                               proxy):
    up = upstream("starttls")
    px = proxy(up, proxy={"workers": "2"}, limits={"max_sessions_per_client": "2"})
    a = px.client()
    b = px.client()
    assert a.read_reply().code == 220 and b.read_reply().code == 220
    with px.client() as third:
        r = third.read_reply()
        assert r.code == 421 and r.lines[0].startswith("4.7.0"), r
        assert third.at_eof()
    with px.client(source="127.0.0.2") as other:
        assert other.read_reply().code == 220
        other.expect("NOOP", 250)
    deny = px.wait_event("session.deny")
    assert [d["reason"] for d in deny] == ["max_sessions_per_client"]
    assert len(up.connections) == 3
    a.expect("QUIT", 221)
    a.close()
    assert len(px.wait_event("session.close", n=2)) >= 2
    with px.client() as again:
        assert again.read_reply().code == 220        # the slot came back
    b.close()


def test_global_max_sessions_is_shared_by_workers(upstream, proxy):
    up = upstream("starttls")
    px = proxy(up, proxy={"workers": "2", "max_sessions": "3"})
    held = [px.client(source="127.0.0.%d" % i) for i in (1, 2, 3)]
    for c in held:
        assert c.read_reply().code == 220
    with px.client(source="127.0.0.4") as over:
        r = over.read_reply()
        assert r.code == 421 and r.lines[0].startswith("4.3.2"), r
    assert len(up.connections) == 3
    for c in held:
        c.close()


# ---- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["unknown-commands", "upstream-550s"])
def test_max_errors_reached_gives_421_and_close(upstream, proxy, kind):
    up = upstream("starttls", rcpt_replies={"x%d@example.test" % i: b"550 5.1.1 no such user\r\n"
                                            for i in range(5)})
    px = proxy(up, limits={"max_errors": "3"})
    with session(px) as c:
        if kind == "unknown-commands":
            # pipelined: what follows the third error must not be forwarded
            c.send(b"FOO\r\nBAR\r\nBAZ\r\nMAIL FROM:<late@example.test>\r\n")
            want = [500, 500, 500, 421]
        else:
            c.expect("MAIL FROM:<a@example.test>", 250)
            c.expect("RCPT TO:<x0@example.test>", 550)
            c.expect("RCPT TO:<x1@example.test>", 550)
            c.send(b"RCPT TO:<x2@example.test>\r\n")
            want = [550, 421]
        got = c.read_all_replies(10)
        assert [r.code for r in got] == want, got
        assert got[-1].lines[0].startswith("4.7.0")
        try:
            c.send(b"RCPT TO:<later@example.test>\r\n")
        except OSError:
            pass
    assert up.wait_closed()
    assert b"late@" not in up.connections[0].transcript
    assert b"later@" not in up.connections[0].transcript
    assert px.wait_event("session.close")[0]["reason"] == "too-many-errors"


# ---- time ----------------------------------------------------------------------------------------

def _trickle_until_closed(c, data, every, limit):
    """Send data one byte at a time every `every` seconds until the proxy answers or closes;
    return (seconds, reply bytes)."""
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < limit:
        try:
            c.sock.sendall(data[i % len(data):i % len(data) + 1])
        except OSError:
            break
        i += 1
        if not c.quiet_for(every):
            break
    c.at_eof(3)
    return time.monotonic() - t0, bytes(c.buf)


@pytest.mark.parametrize("phase", ["command", "data-command"])
def test_trickled_command_cannot_stretch_the_per_step_timeout(upstream, proxy, phase):
    up = upstream("starttls")
    px = proxy(up, proxy={"timeout": "2"})
    with session(px, timeout=15) as c:
        if phase == "data-command":
            c.expect("MAIL FROM:<a@example.test>", 250)
            c.expect("RCPT TO:<b@example.test>", 250)
        took, rest = _trickle_until_closed(c, b"NOOPxxxxxxxxxxxxxxxxxxx", 0.5, 20)
    assert rest.startswith(b"421 4.4.2"), rest
    # 2 s plus what a busy machine adds; a stretched timeout would trickle on for 20 s.
    assert 1.5 <= took <= 10, "closed after %.1fs" % took


def test_trickled_upstream_reply_cannot_stretch_the_per_step_timeout(upstream, proxy):
    # A byte a second, inside the 2 s timeout each: the 14-byte reply would take 14 s.
    up = upstream("starttls", drip=True, drip_delay=1.0, drip_stages={"mail"})
    px = proxy(up, proxy={"timeout": "2"})
    with session(px, timeout=30) as c:
        t0 = time.monotonic()
        r = c.cmd("MAIL FROM:<a@example.test>")
        took = time.monotonic() - t0
    assert r.code == 451 and r.lines[0].startswith("4.4.1"), r
    assert took <= 10, took


def test_trickled_upstream_greeting_cannot_stretch_the_preparation(upstream, proxy):
    up = upstream("starttls", drip=True, drip_delay=0.4, drip_stages={"greeting"})
    px = proxy(up, proxy={"timeout": "2"})
    expect_421_greeting(px, within=8)          # the dripped greeting would take 12 s
    assert wait_upstream_fail(px)["reason"] == "timeout"


@pytest.mark.slow
def test_slow_body_below_min_data_rate_is_cut_after_the_30s_grace_SLOW_35s(upstream, proxy):
    """SLOW (~32 s): the 30 s grace of min_data_rate is fixed. 40 bytes/s of body never lets
    the per-step timeout fire, but stays below min_data_rate = 256."""
    up = upstream("starttls", io_timeout=60)
    px = proxy(up, proxy={"timeout": "3"})
    with open_data(px) as c:
        c.sock.settimeout(60)
        t0 = time.monotonic()
        line = b"slow body line of twenty\r\n"[:20]
        while time.monotonic() - t0 < 60:
            try:
                c.send(line)
            except OSError:
                break
            if not c.quiet_for(0.5):
                break
        took = time.monotonic() - t0
        c.at_eof(5)
        r = c.read_reply()
    assert r.code == 421 and r.lines[0].startswith("4.4.2"), r
    assert 29 <= took <= 45, took              # uncut, the body would go on for 60 s
    assert up.wait_closed() and up.all_messages == []
    assert px.wait_event("message")[0]["result"] == "aborted"


def test_client_that_never_reads_its_replies_is_dropped(upstream, proxy):
    """Pipelines EHLOs (big local replies) without reading: the proxy stops taking commands
    when its output is full, and the session ends within timeout + the 10 s closing linger."""
    up = upstream("starttls")
    px = proxy(up, proxy={"timeout": "2"})
    c = px.client(rcvbuf=4096)
    c.sock.setblocking(False)
    t0 = time.monotonic()
    chunk = b"EHLO x.test\r\n" * 1000
    sent = 0
    while time.monotonic() - t0 < 5:
        try:
            sent += c.sock.send(chunk)
        except BlockingIOError:
            time.sleep(0.05)
        except OSError:
            break
    closes = px.wait_event("session.close", timeout=16)
    took = time.monotonic() - t0
    c.close()
    assert closes, "session still open after %.0fs" % took
    assert closes[0]["reason"] in ("timeout", "client-not-reading"), closes[0]
    assert took < 16
    assert sent > 50000, "the client was never stopped? sent %d" % sent


def test_upstream_that_stops_reading_mid_body_gives_4xx_not_a_hang(upstream, proxy):
    up = upstream("starttls", stall_at="data", io_timeout=30)
    px = proxy(up, proxy={"timeout": "2"})
    c = open_data(px)
    c.sock.settimeout(20)
    block = (b"z" * 998 + b"\r\n") * 1000

    def pump():
        try:
            for _ in range(20):              # up to 20 MB
                c.sock.sendall(block)
        except OSError:
            pass

    t = threading.Thread(target=pump, daemon=True)
    t0 = time.monotonic()
    t.start()
    r = c.read_reply()
    took = time.monotonic() - t0
    c.rst()
    t.join(10)
    assert r.code // 100 == 4, r
    assert took < 15, took                     # 2 s timeout; the upstream would stall 30 s
    assert up.all_messages == []


# ---- memory and descriptors ----------------------------------------------------------------------

def _hostile(px, i):
    """One of several hostile sessions, chosen by i."""
    kind = i % 10
    try:
        c = px.client(timeout=10)
    except OSError:
        return
    try:
        if kind == 0:
            c.send(EARLY)
            c.rst()
        elif kind == 1:
            c.close()                                    # gone during preparation
        elif kind == 2:
            c.read_reply()
            c.send(b"NOOP " + b"x" * 70000 + b"\r\nEHLO d\r\n")
            c.read_reply()
        elif kind == 3:
            c.read_reply()
            c.send(b"EHLO d\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n")
            for _ in range(4):
                c.read_reply()
            c.send(b"half a body\r\n" * 3000)
            c.rst()
        elif kind == 4:
            c.read_reply()
            c.send(bytes(random.getrandbits(8) for _ in range(3000)))
            c.close()
        elif kind == 5:
            c.read_reply()
            c.send(b"EHLO d\r\nAUTH PLAIN " + b64("\0" + USER + "\0" + PASSWORD).encode() +
                   b"\r\n")
            c.read_reply()
            c.read_reply()
            c.send(b"QUIT\r\n")
            c.at_eof(5)
        elif kind == 6:
            c.read_reply()
            c.send(b"FOO\r\n" * 30)
            c.at_eof(5)
        elif kind == 7:
            c.read_reply()
            c.send(b"EHLO d\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n")
            for _ in range(4):
                c.read_reply()
            c.send(b"a\nb\r.\r\n.\n\r\n.\r\n")
            c.read_reply()
            c.close()
        elif kind == 8:
            c.read_reply()
            c.send(b"EHLO d\r\n" * 200)
            c.close()
        else:
            c.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(200))
            c.rst()
    except (OSError, EOFError, AssertionError):
        pass
    finally:
        c.close()


def _is_sanitized(path):
    with open(path, "rb") as f:
        return b"__asan_init" in f.read()


def test_workers_return_to_baseline_fds_and_memory_after_200_hostile_sessions(upstream,
                                                                             proxy):
    up = upstream("starttls", io_timeout=10)
    px = proxy(up, proxy={"workers": "2", "timeout": "3"}, log={"level": "info"})
    pids = px.worker_pids()

    def settle(n_closed):
        assert wait_for(lambda: len(px.events("session.close")) >= n_closed, 20), \
            "sessions did not all close"

    def warm(k):
        with px.client() as c:
            c.read_reply()
            assert c.send_mail("w%d@x.test" % k, ["b@x.test"], b"warm\r\n.\r\n").code == 250
            c.expect("QUIT", 221)

    with ThreadPoolExecutor(8) as ex:
        list(ex.map(warm, range(40)))
    settle(40)
    time.sleep(0.3)
    base_fds = {p: proc_fds(p) for p in pids}
    base_rss = {p: proc_rss_kb(p) for p in pids}
    opened = len(px.events("session.open"))
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda i: _hostile(px, i), range(200)))
    assert wait_for(lambda: len(px.events("session.open")) >= opened + 190, 10)
    total = len(px.events("session.open"))
    settle(total)
    assert wait_for(lambda: {p: proc_fds(p) for p in pids} == base_fds, 10), \
        "fds %r, baseline %r" % ({p: proc_fds(p) for p in pids}, base_fds)
    rss = {p: proc_rss_kb(p) for p in pids}
    # ASan keeps freed memory in quarantine, so RSS says nothing there; the fd check stands,
    # and the plain build (make check, make test's first pass) checks RSS.
    margin = 2048 if not _is_sanitized(PROXY_BIN) else 1 << 30
    for p in pids:
        assert rss[p] - base_rss[p] <= margin, "worker %d RSS %d kB -> %d kB" % (
            p, base_rss[p], rss[p])
    assert not px.events("worker.exit")
    with px.client() as c:                  # still serving
        c.read_reply()
        assert c.send_mail("after@x.test", ["b@x.test"], b"after\r\n.\r\n").code == 250


@pytest.fixture
def relay(upstream, proxy):
    up = upstream("starttls")
    return up, proxy(up)

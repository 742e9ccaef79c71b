"""Promise 4: nothing lost, nothing invented.

The device's answer to its end of data is the upstream's own, and only once the upstream has
given it; every way the upstream can fail gives the device a 4xx (or the upstream's own
refusal, verbatim), never a 2xx it did not earn; a device that leaves mid-message never gets a
message delivered.
"""
import time

import pytest

from adv import open_data, wait_for

BODY = b"Subject: p4\r\n\r\n" + b"".join(b"line %04d of the body\r\n" % i for i in range(200))


def _rest(c):
    """QUIT, then every reply up to the close (221 when the session was still usable)."""
    try:
        c.send(b"QUIT\r\n")
    except OSError:
        pass
    try:
        return c.read_all_replies(10)
    except (ConnectionResetError, EOFError):
        return []


def drive(px, body=BODY, rcpts=("b@example.test",)):
    """One transaction step by step. Return (step, reply, later replies) where step is the
    first step that did not get its expected code (or 'done' with the end-of-data reply);
    the later replies include the answer to a QUIT sent after it."""
    c = px.client(timeout=15)
    try:
        assert c.read_reply().code == 220
        c.expect("EHLO d.test", 250)
        steps = [("mail", b"MAIL FROM:<a@example.test>", 250)]
        steps += [("rcpt", b"RCPT TO:<%s>" % r.encode(), 250) for r in rcpts]
        steps += [("data", b"DATA", 354)]
        for step, line, want in steps:
            r = c.cmd(line)
            if r.code != want:
                return step, r, _rest(c)
        try:
            c.send(body + b".\r\n")
        except OSError:
            pass
        r = c.read_reply()
        return "done", r, _rest(c)
    finally:
        c.close()


def test_client_gets_no_reply_to_its_dot_before_the_upstream_gives_one(upstream, proxy):
    up = upstream("starttls", reply_delay={"dot": 2.0})
    px = proxy(up)
    with open_data(px) as c:
        c.send(BODY + b".\r\n")
        t0 = time.monotonic()
        assert c.quiet_for(1.8), "a reply came before the upstream answered: %r" % c.buf
        r = c.read_reply()
        assert time.monotonic() - t0 >= 1.9
    m, = up.messages
    assert r.raw == m.reply, "the answer is not the upstream's own"


# ---- the upstream failing at each step -----------------------------------------------------------

LOST = object()
FAULTS = {
    # name: (upstream kwargs for stage S, with the reply of S removed or replaced)
    "fin": lambda s: {"override": {s: b""}, "close_at": s},
    "rst": lambda s: {"override": {s: b""}, "rst_at": s},
    "close_notify": lambda s: {"override": {s: b""}, "notify_at": s},
    "garbage_record": lambda s: {"override": {s: b""}, "garbage_at": s},
    "truncated": lambda s: {"override": {s: b"250 2.0.0 O" if s != "data" else b"354 En"},
                            "close_at": s},
    "421": lambda s: {"override": {s: b"421 4.3.0 upstream shutting down\r\n"},
                      "close_at": s},
}


def _faults_at_dot(name):
    if name == "truncated":
        return {"override": {"dot": b"250 2.0.0 Ok: queued as TRUNC"}, "close_at": "dot_reply"}
    if name == "421":
        return {"override": {"dot": b"421 4.3.0 upstream shutting down\r\n"},
                "close_at": "dot_reply"}
    key = {"fin": "close_at", "rst": "rst_at", "close_notify": "notify_at",
           "garbage_record": "garbage_at"}[name]
    return {key: "dot"}       # fires after the final dot is read, before any reply


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("stage", ["mail", "rcpt", "data", "dot"])
def test_upstream_failing_at_a_step_gives_4xx_never_2xx(upstream, proxy, stage, fault):
    kw = _faults_at_dot(fault) if stage == "dot" else FAULTS[fault](stage)
    up = upstream("starttls", **kw)
    px = proxy(up)
    step, r, rest = drive(px)
    assert step == stage if stage != "dot" else step == "done", (step, r)
    if fault == "421":
        assert r.first == "421 4.3.0 upstream shutting down", r   # the upstream's, verbatim
    else:
        assert r.code in (421, 451), r
    assert r.code // 100 == 4 and all(x.code in (421, 451, 221) for x in rest), (r, rest)
    if stage == "dot":
        assert px.wait_event("message")[0]["result"] == "tempfail"
    assert not [m for m in up.all_messages if m.accepted and stage != "dot"]
    assert px.alive()


@pytest.mark.parametrize("fault", ["fin", "rst", "close_notify", "garbage_record"])
def test_upstream_failing_mid_body_gives_451_after_the_dot(upstream, proxy, fault):
    key = {"fin": "close_at", "rst": "rst_at", "close_notify": "notify_at",
           "garbage_record": "garbage_at"}[fault]
    up = upstream("starttls", **{key: "body"})
    px = proxy(up)
    step, r, rest = drive(px, body=BODY * 50)
    assert step == "done" and r.code == 451 and r.lines[0].startswith("4.4."), (step, r)
    assert up.all_messages == []
    assert px.wait_event("message")[0]["result"] == "tempfail"


@pytest.mark.parametrize("stage", ["rcpt", "data"])
def test_silent_upstream_at_a_step_gives_4xx_within_the_timeout(upstream, proxy, stage):
    up = upstream("starttls", override={stage: b""}, stall_at=stage)
    px = proxy(up, proxy={"timeout": "1"})
    t0 = time.monotonic()
    step, r, rest = drive(px)
    assert step == stage and r.code == 451 and r.lines[0].startswith("4.4.1"), (step, r)
    assert time.monotonic() - t0 < 15          # 1 s timeout; the upstream stalls for good
    assert [x.code for x in rest] in ([421], [421, 221]), rest


@pytest.mark.parametrize("stage,reply", [
    ("data", b"452 4.3.1 Insufficient system storage\r\n"),
    ("data", b"554-5.7.1 Policy rejection\r\n554 5.7.1 see https://example.test/p\r\n"),
    ("dot", b"452-4.2.2 Mailbox full\r\n452 4.2.2 try again later\r\n"),
    ("dot", b"550-5.7.1 Message content rejected\r\n550-5.7.1 spam score 99\r\n"
            b"550 5.7.1 id=UPSTREAM-REF-1\r\n"),
], ids=["data-452", "data-554-multiline", "dot-452-multiline", "dot-550-multiline"])
def test_upstream_refusal_of_data_or_message_is_relayed_verbatim(upstream, proxy, stage, reply):
    up = upstream("starttls", override={stage: reply})
    px = proxy(up)
    step, r, rest = drive(px)
    assert step == ("data" if stage == "data" else "done")
    assert r.raw == reply
    assert up.messages == []


# ---- per-recipient answers -------------------------------------------------------------------

RCPT_REPLIES = {
    "r2@example.test": b"550 5.1.1 <r2@example.test>: Recipient address rejected\r\n",
    "r4@example.test": b"452-4.2.2 <r4@example.test>: mailbox full\r\n452 4.2.2 later\r\n",
    "r5@example.test": b"251 2.1.5 <r5@example.test>: will forward\r\n",
}
RCPTS = ["r%d@example.test" % i for i in range(1, 6)]


@pytest.mark.parametrize("pipelined", [False, True], ids=["one-by-one", "pipelined"])
def test_each_recipient_gets_the_upstreams_own_answer(upstream, proxy, pipelined):
    up = upstream("starttls", rcpt_replies=RCPT_REPLIES)
    px = proxy(up)
    with px.client() as c:
        c.read_reply()
        c.expect("EHLO d.test", 250)
        c.expect("MAIL FROM:<a@example.test>", 250)
        if pipelined:
            c.send(b"".join(b"RCPT TO:<%s>\r\n" % r.encode() for r in RCPTS))
            got = [c.read_reply() for _ in RCPTS]
        else:
            got = [c.cmd("RCPT TO:<%s>" % r) for r in RCPTS]
        c.expect("DATA", 354)
        c.send(b"x\r\n.\r\n")
        assert c.read_reply().code == 250
    for r, rep in zip(RCPTS, got):
        assert rep.raw == RCPT_REPLIES.get(r, b"250 2.1.5 Ok\r\n"), (r, rep)
    m, = up.messages
    assert m.rcpts == ["r1@example.test", "r3@example.test", "r5@example.test"]
    assert px.wait_event("message")[0]["rcpts"] == "3"


# ---- the client leaving mid-message ----------------------------------------------------------

TAILS = {"none": b"", "partial-line": b"half a li", "crlf-dot": b"\r\n.", "crlf-dot-cr": b"\r\n.\r"}


@pytest.mark.parametrize("size", [0, 70000, 1500000], ids=["0B", "70kB", "1.5MB"])
@pytest.mark.parametrize("tail", sorted(TAILS))
@pytest.mark.parametrize("how", ["fin", "rst"])
def test_client_gone_mid_data_never_completes_a_message(relay_px, how, tail, size):
    up, px = relay_px
    c = open_data(px)
    body = (BODY * (size // len(BODY) + 1))[:size]
    if size and not TAILS[tail].startswith(b"\r\n"):
        body = body[:-2] + b"\r\n"
    try:
        c.send(body + TAILS[tail])
    except OSError:
        pass
    time.sleep(0.05)
    c.rst() if how == "rst" else c.close()
    assert up.wait_closed(15), "upstream connection kept open after the client left"
    conn, = up.connections
    assert up.all_messages == []
    data = bytes(conn.raw_tls)
    after = data[data.find(b"DATA\r\n") + 6:]
    assert b"\r\n.\r\n" not in after and not after.startswith(b".\r\n"), "final dot upstream"
    msg = wait_for(lambda: px.events("message"), 10)
    assert msg and msg[0]["result"] == "aborted", msg


@pytest.fixture
def relay_px(upstream, proxy):
    up = upstream("starttls")
    return up, proxy(up)

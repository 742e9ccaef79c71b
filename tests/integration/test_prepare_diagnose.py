"""Preparing the upstream is bounded as a whole (connect_timeout), and a failure says why.

The usual mistakes: an implicit-TLS port (465) configured as STARTTLS, which used to be a
silent wait for a greeting until the per-step timeout (300 s by default); a STARTTLS or
plain port configured as implicit TLS; an address with nothing listening.
"""
import time

from conftest import refusing_port
from test_fail_closed import assert_nothing_plaintext, expect_421_greeting

IMPLICIT_HINT = "if this port uses implicit TLS (usually 465), set tls = implicit"
STARTTLS_HINT = "this port speaks plaintext SMTP first; set tls = starttls (usually 587 or 25)"

# The per-step timeout stays at its default: only connect_timeout may end these waits.
SLOW_STEP = {"timeout": "300"}


def timed_421(px, limit=20):
    """Read the greeting; return (reply, seconds it took)."""
    t0 = time.monotonic()
    with px.client(timeout=limit) as c:
        r = c.read_reply()
        took = time.monotonic() - t0
        assert r.code == 421 and r.lines[0].startswith("4."), r
        assert c.at_eof()
    return r, took


def test_implicit_tls_port_configured_starttls_gives_421_after_connect_timeout_with_hint(
        upstream, proxy):
    up = upstream("implicit")       # silent: it waits for our ClientHello
    px = proxy(up, proxy=SLOW_STEP, upstream={"tls": "starttls", "connect_timeout": "2"})
    r, took = timed_421(px)
    assert 1.5 < took < 15, took
    assert r.lines[0].startswith("4.4.1"), r
    fail, = px.wait_event("upstream.fail")
    assert fail["reason"] == "timeout" and fail["stage"] == "greeting", fail
    assert "connect_timeout (2 s)" in fail["detail"], fail
    assert fail["hint"] == IMPLICIT_HINT
    assert_nothing_plaintext(up)


def test_tls_record_instead_of_greeting_gives_421_at_once_with_hint(upstream, proxy):
    """A TLS server that speaks first (here a TLS alert record) on a STARTTLS port."""
    up = upstream("starttls", override={"greeting": b"\x15\x03\x03\x00\x02\x02\x46"})
    px = proxy(up, proxy=SLOW_STEP, upstream={"connect_timeout": "30"})
    expect_421_greeting(px)
    fail, = px.wait_event("upstream.fail")
    assert fail["stage"] == "greeting" and fail["reason"] == "protocol", fail
    assert fail["detail"] == "a TLS record instead of the greeting", fail
    assert fail["hint"] == IMPLICIT_HINT


def test_plaintext_port_configured_implicit_gives_421_at_once_with_hint(upstream, proxy):
    up = upstream("starttls")       # greets in plaintext; our ClientHello gets "220 ..."
    px = proxy(up, proxy=SLOW_STEP, upstream={"tls": "implicit", "connect_timeout": "2"})
    expect_421_greeting(px)
    fail, = px.wait_event("upstream.fail")
    assert fail["stage"] == "tls" and fail["reason"] == "handshake", fail
    assert fail["hint"] == STARTTLS_HINT
    assert_nothing_plaintext(up)


def test_tls_failure_on_a_real_tls_server_gets_no_plaintext_hint(upstream, proxy):
    up = upstream("implicit", max_tls="1.2")
    px = proxy(up, upstream={"min_tls": "1.3"})
    expect_421_greeting(px)
    fail, = px.wait_event("upstream.fail")
    assert fail["reason"] == "handshake" and "hint" not in fail, fail


def test_silent_upstream_gives_421_after_connect_timeout(upstream, proxy):
    up = upstream("starttls", stall_at="connect")
    px = proxy(up, proxy=SLOW_STEP, upstream={"connect_timeout": "2"})
    r, took = timed_421(px)
    assert 1.5 < took < 15, took
    fail, = px.wait_event("upstream.fail")
    assert fail["reason"] == "timeout" and fail["stage"] == "greeting", fail
    assert fail["hint"] == IMPLICIT_HINT


def test_connect_timeout_bounds_the_whole_preparation_not_each_step(upstream, proxy):
    """Every step answers well within its own timeout; all of them together take too long."""
    up = upstream("starttls", reply_delay={"greeting": 1.2, "ehlo": 1.2, "tls_ehlo": 1.2})
    px = proxy(up, proxy=SLOW_STEP, upstream={"connect_timeout": "3"})
    r, took = timed_421(px)
    assert 2.5 < took < 15, took
    fail, = px.wait_event("upstream.fail")
    assert fail["reason"] == "timeout", fail
    assert "connect_timeout (3 s)" in fail["detail"], fail
    assert up.connections[0].verbs(), "the deadline came before the first step finished"
    assert "hint" not in fail, fail
    assert_nothing_plaintext(up)


def test_per_step_timeout_still_applies_under_a_longer_connect_timeout(upstream, proxy):
    up = upstream("starttls", stall_at="ehlo")
    px = proxy(up, proxy={"timeout": "2"}, upstream={"connect_timeout": "300"})
    r, took = timed_421(px)
    assert 1.5 < took < 15, took
    fail, = px.wait_event("upstream.fail")
    assert fail["reason"] == "timeout" and fail["detail"] == "no answer in time", fail
    assert fail["stage"] == "starttls" and "hint" not in fail, fail


def test_unreachable_upstream_logs_each_address_and_its_error(upstream, proxy):
    port = refusing_port()
    px = proxy(None, upstream={"host": "127.0.0.1", "port": str(port)})
    expect_421_greeting(px)
    fail, = px.wait_event("upstream.fail")
    assert fail["reason"] == "connect" and fail["stage"] == "connect", fail
    assert fail["detail"] == "127.0.0.1:%d refused" % port, fail

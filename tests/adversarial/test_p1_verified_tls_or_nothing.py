"""Promise 1: verified TLS or nothing upstream.

No credential, envelope or message byte leaves before TLS >= 1.2 is up with a verified chain
and name. Every case here talks early (EHLO, AUTH PLAIN with the password, MAIL, RCPT, DATA, a
body, all marked) the moment it connects, and checks: a 421 4.x.x greeting then close, one
upstream.fail line with a sensible reason, and not one client byte in the upstream's transcript.
"""
import socket
import ssl
import warnings

import pytest

from adv import (assert_upstream_got_nothing_of_the_client, expect_421_greeting,
                 wait_upstream_fail)

# ---- STARTTLS and capability games -------------------------------------------------------

STARTTLS_REFUSALS = [b"454 4.7.0 TLS not available due to local problem\r\n",
                     b"501 5.5.4 Syntax error\r\n",
                     b"502 5.5.1 Error: command not implemented\r\n",
                     b"554 5.7.3 Not today\r\n",
                     b"421 4.3.2 Shutting down\r\n"]


@pytest.mark.parametrize("reply", STARTTLS_REFUSALS, ids=lambda r: r[:3].decode())
def test_starttls_refused_with_code_gives_421_and_nothing_leaves(upstream, proxy, reply):
    up = upstream("starttls", override={"starttls": reply})
    px = proxy(up)
    r = expect_421_greeting(px)
    assert r.lines[0].startswith("4.7."), r
    f = wait_upstream_fail(px)
    assert f["stage"] == "starttls" and f["reason"] == "starttls-refused", f
    assert reply[:3].decode() in f["detail"], f
    assert up.wait_closed()
    assert_upstream_got_nothing_of_the_client(up)
    assert up.connections[0].verbs() == ["EHLO", "STARTTLS"]


def test_capability_list_without_starttls_gives_421_no_starttls(upstream, proxy):
    up = upstream("starttls", plain_caps=["PIPELINING", "AUTH PLAIN LOGIN", "SIZE 1000"])
    px = proxy(up)
    expect_421_greeting(px)
    f = wait_upstream_fail(px)
    assert f["reason"] == "no-starttls", f
    assert up.wait_closed()
    assert_upstream_got_nothing_of_the_client(up)
    assert up.connections[0].verbs() == ["EHLO"], "STARTTLS sent though not offered"


ODD_STARTTLS = [
    # (reply bytes, what the upstream does next, acceptable reasons)
    (b"2", "close_at", {"closed", "io", "protocol"}),
    (b"2", "rst_at", {"closed", "io", "protocol"}),
    (b"220 Ready to start TLS", "close_at", {"closed", "io", "protocol"}),
    (b"220 Ready\r\n", "close_at", {"closed", "io", "handshake"}),
    (b"220 Ready\r\n", "rst_at", {"closed", "io", "handshake"}),
    (b"220 Ready\n", None, {"protocol", "response-injection"}),
    (b"HELLO this is not SMTP\r\n", None, {"protocol"}),
    (b"250 2.0.0 Ok\r\n", None, {"starttls-refused"}),
    (b"354 go ahead\r\n", None, {"starttls-refused"}),
    (b"\x16\x03\x01\x00\x05hello", "close_at", {"protocol"}),
]


@pytest.mark.parametrize("reply,then,reasons", ODD_STARTTLS,
                         ids=["%r-%s" % (o[0][:12], o[1]) for o in ODD_STARTTLS])
def test_odd_or_partial_starttls_reply_gives_421_and_nothing_leaves(upstream, proxy, reply,
                                                                     then, reasons):
    kw = {"override": {"starttls": reply}}
    if then:
        kw[then] = "starttls"
    up = upstream("starttls", **kw)
    px = proxy(up)
    expect_421_greeting(px)
    f = wait_upstream_fail(px)
    assert f["reason"] in reasons, f
    assert up.wait_closed()
    assert_upstream_got_nothing_of_the_client(up)
    assert up.connections[0].verbs(True) == []


def test_partial_starttls_reply_then_silence_gives_421_after_timeout(upstream, proxy):
    up = upstream("starttls", override={"starttls": b"22"}, stall_at="starttls")
    px = proxy(up, proxy={"timeout": "2"})
    expect_421_greeting(px, within=8)
    f = wait_upstream_fail(px)
    assert f["reason"] == "timeout" and f["stage"] == "starttls", f
    assert_upstream_got_nothing_of_the_client(up)


@pytest.mark.parametrize("reply", [b"220\r\n", b"220-first\r\n220 second\r\n"],
                         ids=["bare-220", "multiline-220"])
def test_valid_but_unusual_220_still_leads_to_verified_tls_before_any_client_byte(
        upstream, proxy, reply):
    up = upstream("starttls", override={"starttls": reply})
    px = proxy(up)
    with px.client() as c:
        assert c.read_reply().code == 220
        c.expect("EHLO d.test", 250)
        c.expect("MAIL FROM:<a@example.test>", 250)
    conn, = up.connections
    assert conn.tls and conn.verbs(False) == ["EHLO", "STARTTLS"]
    assert px.wait_event("tls.handshake")[0]["verify"] == "ok"


@pytest.mark.parametrize("ehlo_reply", [b"500 5.5.1 Command unrecognized: EHLO\r\n",
                                        b"502 5.5.2 Error: command not recognized\r\n"],
                         ids=["500", "502"])
def test_non_esmtp_server_rejecting_ehlo_gives_421_and_no_helo_fallback(upstream, proxy,
                                                                       ehlo_reply):
    """A HELO-only server: the proxy must not fall back to HELO and plaintext."""
    up = upstream("starttls", override={"ehlo": ehlo_reply})
    px = proxy(up)
    expect_421_greeting(px)
    f = wait_upstream_fail(px)
    assert f["stage"] == "ehlo" and f["reason"] == "no-starttls", f
    assert up.wait_closed()
    assert_upstream_got_nothing_of_the_client(up)
    assert up.connections[0].verbs() == ["EHLO"]


def test_plaintext_smtp_on_implicit_tls_port_gives_421_and_no_client_bytes(upstream, proxy):
    up = upstream("implicit", implicit_plaintext=True)
    px = proxy(up)
    expect_421_greeting(px)
    f = wait_upstream_fail(px)
    assert f["stage"] == "tls" and f["reason"] == "handshake", f
    assert up.wait_closed()
    assert_upstream_got_nothing_of_the_client(up)
    assert up.connections[0].commands == []


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_upstream_stalling_mid_handshake_gives_421_after_timeout(upstream, proxy, mode):
    up = upstream(mode, stall_at="handshake")
    px = proxy(up, proxy={"timeout": "2"})
    expect_421_greeting(px, within=8)
    f = wait_upstream_fail(px)
    assert f["stage"] == "tls" and f["reason"] == "timeout", f
    assert "handshake" in f["detail"].lower(), f
    assert_upstream_got_nothing_of_the_client(up)


@pytest.mark.parametrize("how", ["close_at", "rst_at"])
def test_upstream_vanishing_mid_handshake_with_early_talker_leaks_nothing(upstream, proxy,
                                                                         how):
    up = upstream("starttls", **{how: "handshake"})
    px = proxy(up)
    expect_421_greeting(px)
    f = wait_upstream_fail(px)
    assert f["stage"] == "tls", f
    assert up.wait_closed()
    assert_upstream_got_nothing_of_the_client(up)


# ---- TLS versions ------------------------------------------------------------------------------

def _python_client_negotiates(certs, up, version):
    """Harness check: the upstream really speaks `version` to a client that allows it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(certs["ca"][0])
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.TLSv1
    raw = socket.create_connection(("127.0.0.1", up.port), timeout=10)
    try:
        s = ctx.wrap_socket(raw, server_hostname="mail.test")
        got = s.version()
        s.close()
    finally:
        raw.close()
    return got


@pytest.mark.parametrize("version,name", [("1.0", "TLSv1"), ("1.1", "TLSv1.1")])
def test_tls_1_0_or_1_1_only_server_is_refused(certs, upstream, proxy, version, name):
    up = upstream("implicit", min_tls=version, max_tls=version)
    assert _python_client_negotiates(certs, up, version) == name, "harness cannot offer " + name
    n0 = len(up.connections)
    px = proxy(up)
    expect_421_greeting(px)
    f = wait_upstream_fail(px)
    assert f["stage"] == "tls" and f["reason"] == "handshake", f
    assert "version" in f["detail"].lower() or "protocol" in f["detail"].lower(), f
    assert up.wait_closed()
    for conn in up.connections[n0:]:
        assert not conn.tls and conn.commands == []
    assert up.all_messages == []


def test_tls_1_2_only_server_is_refused_when_min_tls_is_1_3(upstream, proxy):
    up = upstream("starttls", max_tls="1.2")
    px = proxy(up, upstream={"min_tls": "1.3"})
    expect_421_greeting(px)
    f = wait_upstream_fail(px)
    assert f["stage"] == "tls", f
    assert_upstream_got_nothing_of_the_client(up)
    assert up.connections[0].verbs(True) == []


# ---- certificates ------------------------------------------------------------------------------

BAD_CERTS = [
    # (cert, server_name or None, substring of OpenSSL's reason)
    ("selfsigned", None, "self-signed"),
    ("wrongname", None, "hostname mismatch"),
    ("cnonly", None, "hostname mismatch"),
    ("expired", None, "expired"),
    ("notyet", None, "not yet valid"),
    ("chain_leafonly", None, "local issuer"),
    ("untrusted", None, "local issuer"),
    ("ipOnly", None, "hostname mismatch"),                  # IP SAN only, a name asked
    ("partialwild", None, "hostname mismatch"),             # m*.test vs mail.test
    ("partialwild3", "mail.example.test", "hostname mismatch"),  # m*.example.test
    ("wildcard", "a.mail.test", "hostname mismatch"),       # *.test over two labels
    ("wildsub", None, "hostname mismatch"),                 # *.mail.test vs mail.test
    ("good", "127.0.0.2", "mismatch"),                      # IP not in the certificate
    ("dnsip", "127.0.0.1", "mismatch"),                     # DNS:127.0.0.1 is not an IP SAN
    ("clientonly", None, "purpose"),                        # EKU clientAuth only
    ("noncaissuer", None, "CA"),                            # issuer is CA:FALSE
    ("rsa1024", None, "too weak"),                          # below the security level
    ("sha1", None, "too weak"),                             # SHA-1 signature
]


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
@pytest.mark.parametrize("cert,name,why", BAD_CERTS,
                         ids=["%s-%s" % (b[0], b[1] or "mail.test") for b in BAD_CERTS])
def test_unverifiable_certificate_gives_421_and_not_one_client_byte(upstream, proxy, mode,
                                                                    cert, name, why):
    weak = {"ciphers": "DEFAULT:@SECLEVEL=0"} if cert in ("rsa1024", "sha1") else {}
    up = upstream(mode, cert=cert, **weak)
    px = proxy(up, upstream={"server_name": name} if name else None)
    r = expect_421_greeting(px)
    assert r.lines[0].startswith("4.7."), r
    f = wait_upstream_fail(px)
    assert f["stage"] == "tls" and f["reason"] == "verify", f
    assert why.lower() in f["detail"].lower(), f
    assert up.wait_closed()
    assert_upstream_got_nothing_of_the_client(up)
    for conn in up.connections:
        assert conn.raw_tls == b"", "application data sent over an unverified session"
    assert not px.events("tls.handshake"), "an unverified handshake reported as done"


@pytest.mark.parametrize("cert,name", [("ipOnly", "127.0.0.1"), ("wildsub", "a.mail.test"),
                                       ("chain", None), ("good", "::1")])
def test_certificate_that_verifies_for_the_configured_name_is_accepted(upstream, proxy, cert,
                                                                      name):
    """The controls of the table above: the same certificates do verify for the right name."""
    up = upstream("implicit", cert=cert)
    px = proxy(up, upstream={"server_name": name} if name else None)
    with px.client() as c:
        assert c.read_reply().code == 220
        c.expect("QUIT", 221)
    hs, = px.wait_event("tls.handshake")
    assert hs["verify"] == "ok", hs

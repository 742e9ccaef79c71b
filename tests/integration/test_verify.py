"""Upstream certificate verification: on by default, fail closed with the OpenSSL reason logged."""
import datetime
import re
import time

import pytest

from test_fail_closed import assert_nothing_plaintext, expect_421_greeting

BAD = [
    ("wrongname", {}, "hostname mismatch"),
    ("wildcard", {}, "hostname mismatch"),
    ("ipOnly", {}, "hostname mismatch"),
    ("selfsigned", {}, "self-signed certificate"),
    ("expired", {}, "certificate has expired"),
    ("notyet", {}, "certificate is not yet valid"),
    ("untrusted", {}, "unable to get local issuer certificate"),
    ("chain_leafonly", {}, "unable to get local issuer certificate"),
    ("good", {"server_name": "other.test"}, "hostname mismatch"),
]


def logged_reason(px, text, timeout=10):
    """Wait for a log line carrying the OpenSSL verify string in one of its values."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for d in px.log_lines():
            if any(text.lower() in str(v).lower() for v in d.values()):
                return d
        time.sleep(0.05)
    return None


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
@pytest.mark.parametrize("cert,conf,reason", BAD, ids=[b[0] + "-" + b[2].split()[0] for b in BAD])
def test_unverified_certificate_gives_421_and_logs_reason(upstream, proxy, mode, cert, conf,
                                                          reason):
    up = upstream(mode, cert=cert)
    px = proxy(up, upstream=conf)
    r = expect_421_greeting(px)
    assert r.lines[0].startswith("4.7."), r
    assert up.wait_closed()
    assert_nothing_plaintext(up)
    for conn in up.connections:
        assert conn.verbs(True) == [], "commands sent over an unverified TLS session"
    assert logged_reason(px, reason), px.stderr()


@pytest.mark.parametrize("cert,conf", [
    ("good", {}),
    ("good", {"server_name": "localhost"}),
    ("chain", {}),                                  # intermediate sent by the server
    ("ipOnly", {"server_name": "127.0.0.1"}),
])
def test_verified_certificate_is_accepted(upstream, proxy, cert, conf):
    up = upstream("starttls", cert=cert)
    px = proxy(up, upstream=conf)
    with px.client() as c:
        assert c.read_reply().code == 220
        c.expect("EHLO d", 250)
        c.expect("QUIT", 221)
    hs, = px.wait_event("tls.handshake")
    assert hs.get("verify") == "ok"


def test_verification_is_on_when_not_configured(upstream, proxy):
    up = upstream("starttls", cert="selfsigned")
    px = proxy(up, upstream={"verify": None})
    expect_421_greeting(px)


def test_cn_only_certificate_is_refused(upstream, proxy):
    """No SAN: the subject CN is not a name to trust (RFC 6125 / RFC 9525)."""
    up = upstream("starttls", cert="cnonly")
    px = proxy(up)
    expect_421_greeting(px)


def test_tls_below_min_tls_is_refused(upstream, proxy):
    up = upstream("starttls", max_tls="1.1", min_tls="1.0")
    px = proxy(up)
    expect_421_greeting(px)
    assert up.connections[0].verbs(True) == []


def test_min_tls_1_3_refuses_tls_1_2_server(upstream, proxy):
    up = upstream("implicit", max_tls="1.2")
    px = proxy(up, upstream={"min_tls": "1.3"})
    expect_421_greeting(px)


def test_tls_1_2_server_is_accepted_and_logged(upstream, proxy):
    up = upstream("starttls", max_tls="1.2")
    px = proxy(up)
    with px.client() as c:
        assert c.read_reply().code == 220
    assert up.connections[0].tls_version == "TLSv1.2"
    assert px.wait_event("tls.handshake")[0]["version"] == "TLSv1.2"


def test_verify_no_still_encrypts_and_warns_every_handshake(upstream, proxy):
    up = upstream("starttls", cert="selfsigned")
    px = proxy(up, upstream={"verify": "no"})
    for i in range(2):
        with px.client() as c:
            assert c.read_reply().code == 220
            r = c.send_mail("a@example.test", ["b@example.test"], b"m%d\r\n.\r\n" % i)
            assert r.code == 250
            c.expect("QUIT", 221)
    assert up.wait_messages(2)
    assert all(conn.tls and not {"MAIL", "RCPT"} & set(conn.verbs(False))
               for conn in up.connections)
    hss = px.wait_event("tls.handshake", n=2)
    assert len(hss) == 2
    lines = px.log_lines()
    for hs in hss:
        assert any(d.get("level") == "warn" and d.get("sid") == hs.get("sid") for d in lines), \
            "no warning for handshake %r" % hs


def _refused_certificate(upstream, proxy, cert, mode="starttls", **conf):
    """The upstream.fail line for a certificate the proxy refused (logged at warn)."""
    up = upstream(mode, cert=cert)
    px = proxy(up, upstream=conf)
    expect_421_greeting(px)
    fail, = px.wait_event("upstream.fail")
    assert fail["level"] == "warn" and fail["reason"] == "verify", fail
    return fail


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_name_mismatch_logs_name_checked_and_what_the_certificate_says(upstream, proxy, mode):
    fail = _refused_certificate(upstream, proxy, "wrongname", mode)
    assert fail["detail"] == "hostname mismatch", fail
    assert fail["server_name"] == "mail.test"
    assert "CN=other.test" in fail["subject"]
    assert fail["sans"] == "DNS:other.test"
    assert "CN=Test Root CA" in fail["issuer"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", fail["not_after"]), fail


def test_name_mismatch_against_address_logs_ip_sans(upstream, proxy):
    fail = _refused_certificate(upstream, proxy, "good", server_name="192.0.2.7")
    assert fail["server_name"] == "192.0.2.7"
    assert fail["sans"] == "DNS:mail.test, DNS:localhost, IP:127.0.0.1, IP:::1", fail


def test_long_san_list_is_bounded_and_says_how_many_were_left_out(upstream, proxy):
    fail = _refused_certificate(upstream, proxy, "manynames")
    sans = fail["sans"]
    assert sans.startswith("DNS:host-00.a-rather-long-subdomain.example.test, "), sans
    assert len(sans) < 330, sans
    shown = sans.count("DNS:") + sans.count("IP:")
    more = re.search(r", (\d+) more$", sans)
    assert more and shown + int(more.group(1)) == 60, sans


def test_expired_certificate_logs_its_not_after(upstream, proxy):
    fail = _refused_certificate(upstream, proxy, "expired")
    assert fail["detail"] == "certificate has expired", fail
    not_after = datetime.datetime.strptime(fail["not_after"], "%Y-%m-%dT%H:%M:%SZ")
    assert not_after < datetime.datetime.utcnow() - datetime.timedelta(days=20), fail


def test_unknown_ca_logs_the_issuer(upstream, proxy):
    fail = _refused_certificate(upstream, proxy, "untrusted")
    assert fail["detail"] == "unable to get local issuer certificate", fail
    assert "CN=Untrusted Root CA" in fail["issuer"], fail
    assert fail["sans"] == "DNS:mail.test"

"""Self-tests of the harness (test CA, test upstream) with Python's own clients; no daemon.

If these fail, the daemon tests below them cannot be trusted."""
import smtplib
import socket
import ssl
import warnings

import pytest

from conftest import PASSWORD, USER
from smtpwire import Client


@pytest.mark.parametrize("cert,name,ok", [
    ("good", "mail.test", True), ("good", "localhost", True), ("good", "127.0.0.1", True),
    ("wrongname", "mail.test", False), ("selfsigned", "mail.test", False),
    ("expired", "mail.test", False), ("notyet", "mail.test", False),
    ("ipOnly", "127.0.0.1", True), ("ipOnly", "mail.test", False),
    ("wildcard", "mail.test", False),       # OpenSSL refuses a wildcard over one label
    ("chain", "mail.test", True), ("chain_leafonly", "mail.test", False),
    ("untrusted", "mail.test", False),
])
def test_testca_certificates_verify_as_named(certs, upstream, cert, name, ok):
    up = upstream("implicit", cert=cert)
    ctx = ssl.create_default_context(cafile=certs["ca"][0])
    raw = socket.create_connection(("127.0.0.1", up.port), timeout=10)
    try:
        if ok:
            s = ctx.wrap_socket(raw, server_hostname=name)
            assert s.recv(100).startswith(b"220 ")
            s.close()
        else:
            with pytest.raises(ssl.SSLCertVerificationError):
                ctx.wrap_socket(raw, server_hostname=name)
    finally:
        raw.close()


def test_upstream_starttls_records_session_exactly(certs, upstream):
    up = upstream("starttls")
    ctx = ssl.create_default_context(cafile=certs["ca"][0])
    with smtplib.SMTP("127.0.0.1", up.port, local_hostname="client.test", timeout=10) as s:
        s.ehlo()
        assert s.has_extn("starttls") and not s.has_extn("auth")
        s._host = "mail.test"          # smtplib sends SNI for its _host only
        s.starttls(context=ctx)
        s.ehlo()
        assert s.has_extn("chunking") and "PLAIN" in s.esmtp_features["auth"]
        s.login(USER, PASSWORD)
        s.sendmail("a@example.test", ["b@example.test", "c@example.test"],
                   b"Subject: t\r\n\r\n.leading dot\r\nend\r\n")
    assert up.wait_closed()
    c = up.connections[0]
    assert c.verbs(False) == ["EHLO", "STARTTLS"]
    assert c.verbs(True) == ["EHLO", "AUTH", "MAIL", "RCPT", "RCPT", "DATA", "QUIT"]
    assert c.sni == "mail.test" and c.tls_version in ("TLSv1.3", "TLSv1.2")
    assert c.auth == [("PLAIN", USER, PASSWORD, True)]
    m, = up.messages
    assert m.rcpts == ["b@example.test", "c@example.test"]
    assert m.raw == b"Subject: t\r\n\r\n..leading dot\r\nend\r\n"
    assert m.body == b"Subject: t\r\n\r\n.leading dot\r\nend\r\n"


def test_upstream_implicit_auth_login_and_pipelining(certs, upstream):
    up = upstream("implicit")
    ctx = ssl.create_default_context(cafile=certs["ca"][0])
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", up.port), timeout=10),
                        server_hostname="mail.test")
    c = Client.__new__(Client)
    c.sock, c.buf, c.received = s, bytearray(), bytearray()
    assert c.read_reply().code == 220
    c.expect("EHLO x", 250)
    c.expect("AUTH LOGIN", 334)
    c.expect("ZGV2aWNlQGV4YW1wbGUudGVzdA==", 334)
    c.expect("czNjcmV0LVBhNTU=", 235)
    c.send(b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nRCPT TO:<c@x>\r\nDATA\r\n")
    assert [c.read_reply().code for _ in range(4)] == [250, 250, 250, 354]
    c.send(b"x\r\n.\r\n")
    assert c.read_reply().first.startswith("250 2.0.0 Ok: queued as ")
    assert up.connections[0].raw_plain == b""
    assert up.messages[0].raw == b"x\r\n"


def test_upstream_fault_injection_after_starttls_is_one_segment(upstream):
    up = upstream("starttls", inject_after_starttls=b"250 injected\r\n")
    with Client(up.port) as c:
        c.read_reply()
        c.expect("EHLO x", 250)
        c.send(b"STARTTLS\r\n")
        assert c.read_reply().code == 220
        assert bytes(c.buf) == b"250 injected\r\n"


@pytest.mark.parametrize("stage", ["greeting", "ehlo", "starttls"])
def test_upstream_close_at_stage(upstream, stage):
    up = upstream("starttls", close_at=stage)
    with Client(up.port) as c:
        c.read_reply()
        if stage != "greeting":
            c.expect("EHLO x", 250)
        if stage == "starttls":
            c.expect("STARTTLS", 220)
        assert c.at_eof()


def test_upstream_overrides_and_per_recipient_replies(upstream):
    up = upstream("starttls", starttls=False, override={"dot": b"554 5.7.1 spam\r\n"},
                  rcpt_replies={"bad@x": b"550 5.1.1 no such user\r\n"})
    with Client(up.port) as c:
        c.read_reply()
        assert "STARTTLS" not in c.expect("EHLO x", 250).text
        c.expect("STARTTLS", 502)
        c.expect("MAIL FROM:<a@x>", 250)
        c.expect("RCPT TO:<bad@x>", 550)
        c.expect("RCPT TO:<ok@x>", 250)
        c.expect("DATA", 354)
        c.send(b"hello\r\n.\r\n")
        assert c.read_reply().first == "554 5.7.1 spam"
    assert up.messages == [] and up.all_messages[0].rcpts == ["ok@x"]


def test_upstream_drip_sends_one_byte_per_segment(upstream):
    up = upstream("starttls", drip=True)
    with Client(up.port) as c:
        assert c.read_reply().code == 220
        assert c.expect("EHLO x", 250).lines[0] == "mail.test"


def test_upstream_can_serve_tls_1_1_for_min_tls_tests(certs, upstream):
    up = upstream("implicit", max_tls="1.1", min_tls="1.0")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(certs["ca"][0])
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", up.port), timeout=10),
                        server_hostname="mail.test")
    assert s.version() == "TLSv1.1"
    s.close()

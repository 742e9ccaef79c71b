"""TLS 1.2 suites offered upstream: ECDHE + AEAD by default (Mozilla intermediate), tls_ciphers
to override, checked by -t, and a warning for a handshake without forward secrecy."""
import socket
import struct
import threading

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography import x509

import testca
from conftest import check_config, render_ini
from test_fail_closed import expect_421_greeting
import upstream as upstream_mod

# IANA code points of the default TLS 1.2 list, and of the TLS 1.3 suites.
DEFAULT_TLS12 = {0xC02B: "ECDHE-ECDSA-AES128-GCM-SHA256", 0xC02F: "ECDHE-RSA-AES128-GCM-SHA256",
                 0xC02C: "ECDHE-ECDSA-AES256-GCM-SHA384", 0xC030: "ECDHE-RSA-AES256-GCM-SHA384",
                 0xCCA9: "ECDHE-ECDSA-CHACHA20-POLY1305", 0xCCA8: "ECDHE-RSA-CHACHA20-POLY1305"}
TLS13 = {0x1301, 0x1302, 0x1303}
RENEGOTIATION_SCSV = 0x00FF
# Static RSA key exchange, CBC with a SHA-1 MAC: what OpenSSL's default list still offers.
WEAK = "AES128-SHA"


@pytest.fixture(scope="module")
def rsa_upstream_cert(certs, tmp_path_factory):
    """An RSA-2048 certificate for mail.test from the test CA: static RSA key exchange needs an
    RSA key (the other test certificates are ECDSA)."""
    with open(certs["ca"][0], "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    with open(certs["ca"][1], "rb") as f:
        ca_key = serialization.load_pem_private_key(f.read(), None)
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = testca._cert("mail.test", k, ca, ca_key, san=["mail.test", "127.0.0.1"])
    return testca._write(str(tmp_path_factory.mktemp("rsa")), "rsa", [cert], k)


@pytest.fixture
def rsa_upstream(rsa_upstream_cert):
    made = []

    def make(mode, **kw):
        u = upstream_mod.Upstream(*rsa_upstream_cert, mode=mode, io_timeout=15, **kw)
        made.append(u)
        return u.start()

    yield make
    for u in made:
        u.stop()


def client_hello_suites(sock):
    """Read the first TLS record from sock (a ClientHello) and return its cipher suite list."""
    buf = b""
    while len(buf) < 5 or len(buf) < 5 + struct.unpack("!H", buf[3:5])[0]:
        data = sock.recv(65536)
        assert data, "closed before a whole ClientHello: %r" % buf
        buf += data
    assert buf[0] == 0x16 and buf[5] == 0x01, "not a ClientHello: %r" % buf[:8]
    p = 5 + 4 + 2 + 32            # record header, handshake header, version, random
    p += 1 + buf[p]               # session id
    n = struct.unpack("!H", buf[p:p + 2])[0]
    return [struct.unpack("!H", buf[i:i + 2])[0] for i in range(p + 2, p + 2 + n, 2)]


def hello(px):
    with px.client() as c:
        assert c.read_reply().code == 220
        c.expect("QUIT", 221)


def offered_suites(proxy, **upstream_conf):
    """The cipher suites in the ClientHello the proxy sends to an implicit-TLS port."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    ls.settimeout(15)
    got = {}

    def serve():
        try:
            s, _ = ls.accept()
            s.settimeout(15)
            with s:
                got["suites"] = client_hello_suites(s)
        except Exception as e:      # reported by the assertion below
            got["error"] = repr(e)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    port = ls.getsockname()[1]
    try:
        px = proxy(None, upstream=dict({"port": str(port), "tls": "implicit"}, **upstream_conf))
        expect_421_greeting(px)
        t.join(15)
    finally:
        ls.close()
    assert "suites" in got, got
    return got["suites"]


def test_default_offer_is_ecdhe_aead_and_every_tls13_suite(proxy):
    suites = offered_suites(proxy)
    assert set(suites) - TLS13 - {RENEGOTIATION_SCSV} == set(DEFAULT_TLS12), \
        ["%04X" % x for x in suites]
    assert TLS13 <= set(suites)


def test_tls_ciphers_override_replaces_the_default_list(proxy):
    suites = offered_suites(proxy, tls_ciphers="ECDHE-RSA-AES256-GCM-SHA384")
    assert set(suites) - TLS13 - {RENEGOTIATION_SCSV} == {0xC030}, ["%04X" % x for x in suites]


@pytest.mark.parametrize("cert", ["ecdsa", "rsa"])
def test_tls12_handshake_with_the_default_list_is_ecdhe_aead(upstream, rsa_upstream, proxy,
                                                             cert):
    up = (rsa_upstream if cert == "rsa" else upstream)("starttls", max_tls="1.2")
    px = proxy(up)
    hello(px)
    hs, = px.wait_event("tls.handshake")
    assert hs["version"] == "TLSv1.2" and hs["cipher"] in DEFAULT_TLS12.values(), hs
    assert hs["fs"] == "yes", hs
    assert not px.events("tls.no-forward-secrecy")


def test_tls13_handshake_is_forward_secret(upstream, proxy):
    up = upstream("implicit")
    px = proxy(up)
    hello(px)
    hs, = px.wait_event("tls.handshake")
    assert hs["version"] == "TLSv1.3" and hs["fs"] == "yes", hs


def test_static_rsa_cbc_only_server_is_refused_by_default(rsa_upstream, proxy):
    up = rsa_upstream("starttls", max_tls="1.2", ciphers=WEAK)
    px = proxy(up)
    r = expect_421_greeting(px)
    assert r.lines[0].startswith("4.7.0"), r
    f, = px.wait_event("upstream.fail")
    assert f["stage"] == "tls" and f["reason"] == "handshake", f
    assert up.wait_closed()
    assert not up.connections[0].tls and up.connections[0].verbs(True) == []
    assert not px.events("tls.handshake")


def test_tls_ciphers_override_connects_and_warns_without_forward_secrecy(rsa_upstream, proxy):
    up = rsa_upstream("starttls", max_tls="1.2", ciphers=WEAK)
    px = proxy(up, upstream={"tls_ciphers": WEAK})
    hello(px)
    hs, = px.wait_event("tls.handshake")
    assert hs["cipher"] == WEAK and hs["fs"] == "no", hs
    w, = px.wait_event("tls.no-forward-secrecy")
    assert w["level"] == "warn" and w["cipher"] == WEAK, w
    assert up.connections[0].cipher == WEAK


def test_tls_ciphers_that_match_nothing_fail_the_check_with_file_and_line(tmp_path,
                                                                         proxy_config):
    sections = proxy_config(None, upstream={"port": "587", "tls_ciphers": "NO-SUCH-CIPHER"})
    text = render_ini(sections)
    line = text.splitlines().index("tls_ciphers = NO-SUCH-CIPHER") + 1
    path, p = check_config(str(tmp_path), text)
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    assert "%s:%d: tls_ciphers 'NO-SUCH-CIPHER'" % (path, line) in out, out
    # A list OpenSSL knows passes.
    sections["upstream"]["tls_ciphers"] = "ECDHE-RSA-AES128-GCM-SHA256:" + WEAK
    _, p = check_config(str(tmp_path), render_ini(sections))
    assert p.returncode == 0, p.stdout + p.stderr

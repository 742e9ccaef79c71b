"""PROXY protocol on a [listener NAME] (proxy_protocol = v1 | v2, proxy_from): the address in a
balancer's header is the client for allow, device profiles, per-client limits and logs; anything
else is closed before a word of SMTP and costs no upstream connection."""
import socket
import ssl
import struct
import time

import pytest

from conftest import Client, check_config

SIG = b"\r\n\r\n\x00\r\nQUIT\n"
BODY = b"Subject: pp\r\n\r\nthrough a balancer\r\n.\r\n"


def v1(src="192.0.2.7", sport=56324, dst="198.51.100.1", dport=25):
    fam = "TCP6" if ":" in src else "TCP4"
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport, dport)).encode()


def v2(src="192.0.2.7", sport=56324, dst="198.51.100.1", dport=25, command=1, tlv=b""):
    body = (socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
            + tlv)
    return SIG + bytes([0x20 | command, 0x11]) + struct.pack("!H", len(body)) + body


def port_of(px, name):
    for d in px.events("proxy.listen"):
        if d.get("listener") == name:
            return int(d["addr"].rsplit(":", 1)[1])
    raise AssertionError("no proxy.listen for %s" % name)


def lb(version, proxy_from="127.0.0.0/8", **more):
    d = {"listen": "127.0.0.1:0", "proxy_protocol": version, "proxy_from": proxy_from}
    d.update(more)
    return d


@pytest.fixture
def balanced(upstream, proxy):
    """A proxy with a v1 and a v2 listener that trust loopback as the balancer."""
    def make(proxy_over=None, **sections):
        up = upstream("starttls")
        p = dict({"allow": "127.0.0.0/8, 192.0.2.0/24, 2001:db8::/32"}, **(proxy_over or {}))
        secs = {"listener lb1": lb("v1"), "listener lb2": lb("v2")}
        secs.update(sections)
        return up, proxy(up, proxy=p, **secs)
    return make


def connect(port, header):
    c = Client(port)
    c.send(header)
    return c


def test_v1_and_v2_header_address_is_the_client(balanced):
    up, px = balanced()
    for name, hdr in (("lb1", v1()), ("lb2", v2())):
        with connect(port_of(px, name), hdr) as c:
            assert c.read_reply().code == 220
            assert c.send_mail("a@example.test", ["b@example.test"], BODY).code == 250
            c.expect("QUIT", 221)
        opened = px.wait_event("session.open", listener=name)[-1]
        assert opened["client"] == "192.0.2.7:56324"
        assert opened["via"].startswith("127.0.0.1:"), opened
        msg = px.wait_event("message", client="192.0.2.7:56324")
        assert msg and msg[-1]["result"] == "ok"
    assert len(up.messages) == 2


def test_ipv6_client_in_a_v1_header(balanced):
    _, px = balanced()
    with connect(port_of(px, "lb1"), v1(src="2001:db8::7", dst="2001:db8::1")) as c:
        assert c.read_reply().code == 220
    assert px.wait_event("session.open", client="[2001:db8::7]:56324")


def test_v2_local_uses_the_socket_address(balanced):
    """A balancer's own health check (LOCAL) is the balancer itself: allowed as loopback."""
    _, px = balanced()
    with connect(port_of(px, "lb2"), v2(command=0)) as c:
        assert c.read_reply().code == 220
    opened = px.wait_event("session.open", listener="lb2")[-1]
    assert opened["client"].startswith("127.0.0.1:") and opened["client"] == opened["via"]


def test_commands_in_the_same_segment_as_the_header_are_the_clients(balanced):
    """The header is consumed exactly: an early talker's EHLO behind it reaches the session."""
    _, px = balanced()
    with connect(port_of(px, "lb1"), v1() + b"EHLO early.test\r\n") as c:
        assert c.read_reply().code == 220
        assert c.read_reply().code == 250
    with connect(port_of(px, "lb2"), v2() + b"NOOP\r\n") as c:
        assert c.read_reply().code == 220
        assert c.read_reply().code == 250


def assert_closed_silently(c):
    """Closed without a greeting: not one byte of SMTP."""
    assert c.at_eof(timeout=10)
    assert bytes(c.received) == b""


@pytest.mark.parametrize("name,header,reason", [
    ("lb1", b"EHLO printer.lan\r\n", "malformed"),
    ("lb1", b"PROXY TCP4 192.0.2.7 198.51.100.1 1 99999\r\n", "malformed"),
    ("lb1", b"PROXY " + b"A" * 120, "too-long"),
    ("lb2", v1(), "malformed"),                       # a v1 header on a v2 listener
    ("lb2", SIG + b"\x21\x11\x04\x01", "too-long"),   # 1025 bytes announced
    ("lb2", SIG + b"\x21\x12\x00\x0c" + b"\x00" * 12, "unsupported"),   # UDP4
])
def test_bad_headers_close_before_any_smtp(balanced, name, header, reason):
    up, px = balanced()
    with connect(port_of(px, name), header) as c:
        assert_closed_silently(c)
    got = px.wait_event("proxy.header", reason=reason)
    assert got and got[0]["listener"] == name and got[0]["detail"], px.events("proxy.header")
    assert not px.events("session.open")
    assert up.connections == []


def test_a_sender_outside_proxy_from_is_closed_unread(upstream, proxy):
    up = upstream("starttls")
    px = proxy(up, **{"listener lb": lb("v1", proxy_from="10.9.8.0/24")})
    with connect(port_of(px, "lb"), v1()) as c:
        assert_closed_silently(c)
    got = px.wait_event("proxy.header", reason="not-allowed")
    assert got and got[0]["client"].startswith("127.0.0.1:")
    assert up.connections == []


def test_truncated_or_slow_header_times_out(balanced):
    up, px = balanced()
    t0 = time.monotonic()
    with connect(port_of(px, "lb1"), b"PROXY TCP4 192.0.2.7 ") as c:
        assert_closed_silently(c)
    assert 4 <= time.monotonic() - t0 < 9
    assert px.wait_event("proxy.header", reason="timeout")
    # A header cut short by the balancer closing is logged as such.
    c = connect(port_of(px, "lb2"), SIG + b"\x21\x11")
    c.sock.shutdown(socket.SHUT_WR)
    assert c.at_eof(timeout=10)
    c.close()
    assert px.wait_event("proxy.header", reason="closed")
    assert up.connections == []


def test_allow_limits_and_profiles_follow_the_header(balanced):
    up, px = balanced(proxy_over={"allow": "127.0.0.0/8, 192.0.2.0/25"},
                      limits={"max_sessions_per_client": "1"},
                      **{"device printer": {"match": "192.0.2.9",
                                            "force_sender": "printer@example.test"}})
    port = port_of(px, "lb1")
    # Outside allow by its header address, though the balancer is inside.
    with connect(port, v1(src="192.0.2.200")) as c:
        r = c.read_reply()
        assert r.code == 554, r
    deny = px.wait_event("session.deny", reason="allow")[-1]
    assert deny["client"] == "192.0.2.200:56324" and deny["via"].startswith("127.0.0.1:")
    # One session per client address: the header's, not the balancer's.
    first = connect(port, v1(src="192.0.2.7", sport=1000))
    assert first.read_reply().code == 220
    with connect(port, v1(src="192.0.2.7", sport=1001)) as c:
        assert c.read_reply().code == 421
    with connect(port, v1(src="192.0.2.8", sport=1002)) as c:
        assert c.read_reply().code == 220
    first.close()
    # The device profile is chosen by the header address.
    with connect(port, v1(src="192.0.2.9")) as c:
        assert c.read_reply().code == 220
        assert c.send_mail("scanner@lan.test", ["b@example.test"], BODY).code == 250
    msg = px.wait_event("message", device="printer")
    assert msg and msg[0]["from"] == "printer@example.test"


def test_implicit_tls_behind_a_v2_balancer(balanced, certs):
    cf, kf = certs["good"]
    _, px = balanced(**{"listener lbtls": lb("v2", tls="implicit", cert_file=cf, key_file=kf)})
    s = socket.create_connection(("127.0.0.1", port_of(px, "lbtls")), timeout=10)
    s.sendall(v2(src="192.0.2.11"))
    ctx = ssl.create_default_context(cafile=certs["ca"][0])
    with ctx.wrap_socket(s, server_hostname="mail.test") as t:
        assert t.recv(512).startswith(b"220 ")
        t.sendall(b"QUIT\r\n")
        assert t.recv(512).startswith(b"221")
    hs = px.wait_event("tls.client-handshake", listener="lbtls")
    assert hs and hs[0]["client"] == "192.0.2.11:56324"


def test_check_requires_proxy_from(tmp_path, certs):
    text = ("[proxy]\nhostname = proxy.test\n\n[upstream]\nhost = 127.0.0.1\nca_file = %s\n\n"
            "[listener lb]\nlisten = 127.0.0.1:0\nproxy_protocol = v2\n" % certs["ca"][0])
    path, p = check_config(str(tmp_path), text)
    assert p.returncode == 1
    line = text.splitlines().index("proxy_protocol = v2") + 1
    assert "%s:%d: [listener lb] proxy_protocol = v2 needs proxy_from" % (path, line) \
        in p.stderr, p.stderr
    path, p = check_config(str(tmp_path), text.replace("v2", "v3"))
    assert p.returncode == 1 and "proxy_protocol = v3" in p.stderr
    path, p = check_config(str(tmp_path), text.replace("proxy_protocol = v2",
                                                       "proxy_from = 10.0.0.0/8"))
    assert p.returncode == 0 and "warning: [listener lb] proxy_from is set but " \
        "proxy_protocol = no" in p.stderr, p.stderr

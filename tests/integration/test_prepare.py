"""The upstream is fully prepared (TLS, EHLO, AUTH) before the client is greeted."""

import pytest

from test_fail_closed import expect_421_greeting


def test_starttls_upstream_gets_ehlo_starttls_ehlo_before_client_greeting(relay):
    up, px = relay
    with px.client() as c:
        r = c.read_reply()
        assert r.code == 220 and r.first.startswith("220 ")
        # everything below happened before the 220 reached us
        conn, = up.connections
        assert conn.verbs(False) == ["EHLO", "STARTTLS"]
        assert conn.verbs(True) == ["EHLO"]
        assert conn.ehlo_names == [(False, "proxy.test"), (True, "proxy.test")]
        assert conn.tls and conn.after_starttls == b""


def test_client_greeting_carries_configured_hostname(relay):
    _, px = relay
    with px.client() as c:
        r = c.read_reply()
        assert r.code == 220 and "proxy.test" in r.lines[0]


def test_implicit_upstream_handshakes_before_any_byte(upstream, proxy):
    up = upstream("implicit")
    px = proxy(up)
    with px.client() as c:
        assert c.read_reply().code == 220
        conn, = up.connections
        assert conn.raw_plain == b"" and conn.tls
        assert conn.verbs(True) == ["EHLO"] and conn.ehlo == "proxy.test"


def test_upstream_ehlo_uses_configured_name_never_localhost(upstream, proxy):
    up = upstream("starttls")
    px = proxy(up, proxy={"hostname": "gw.example.test"})
    with px.client() as c:
        assert c.read_reply().code == 220
        c.expect("EHLO client.test", 250)
    conn, = up.connections
    assert [n for _, n in conn.ehlo_names] == ["gw.example.test", "gw.example.test"]
    assert b"localhost" not in conn.transcript.lower()


def test_tls_defaults_to_implicit_for_port_465(upstream, proxy):
    try:
        up = upstream("implicit", host="127.0.0.2", port=465)
    except OSError as e:
        pytest.skip("cannot bind 127.0.0.2:465: %s" % e)
    px = proxy(up, upstream={"host": "127.0.0.2", "tls": None})
    with px.client() as c:
        assert c.read_reply().code == 220
    conn, = up.connections
    assert conn.raw_plain == b"" and conn.tls


def test_tls_defaults_to_starttls_for_other_ports(upstream, proxy):
    up = upstream("starttls")
    px = proxy(up, upstream={"tls": None})
    with px.client() as c:
        assert c.read_reply().code == 220
    conn, = up.connections
    assert conn.verbs(False) == ["EHLO", "STARTTLS"] and conn.tls


@pytest.mark.parametrize("inject", [b"250 injected\r\n", b"2", b"\x16\x03\x01"])
def test_bytes_after_starttls_220_are_refused(upstream, proxy, inject):
    """Response injection (CVE-2011-0411 class): bytes in the 220's segment abort the upstream."""
    up = upstream("starttls", inject_after_starttls=inject)
    px = proxy(up)
    expect_421_greeting(px)
    assert up.wait_closed()
    conn, = up.connections
    assert not conn.tls, "handshake attempted after injected bytes"
    assert conn.verbs(True) == []
    assert px.wait_event("upstream.fail")


def test_sni_is_server_name(upstream, proxy):
    up = upstream("starttls")
    px = proxy(up, upstream={"server_name": "localhost"})
    with px.client() as c:
        assert c.read_reply().code == 220
    assert up.connections[0].sni == "localhost"


def test_no_sni_for_ip_address_server_name(upstream, proxy):
    """RFC 6066: SNI carries host names only; an IP is checked against IP SANs instead."""
    up = upstream("implicit", cert="ipOnly")
    px = proxy(up, upstream={"server_name": "127.0.0.1"})
    with px.client() as c:
        assert c.read_reply().code == 220
    assert up.connections[0].sni is None


def test_server_name_defaults_to_host(upstream, proxy):
    up = upstream("starttls")
    px = proxy(up, upstream={"host": "localhost", "server_name": None})
    with px.client() as c:
        assert c.read_reply().code == 220
    assert up.connections[0].sni == "localhost"

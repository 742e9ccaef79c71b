"""Name resolution (every address tried in turn) and IPv6 listeners."""
import os
import socket
import stat
import subprocess
import tempfile

import pytest

import daemon


def _ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


def _private_hosts_file():
    """1 if this machine lets a process see its own /etc/hosts (unshare -m, then a bind mount):
    containers and chroots usually cannot make a mount namespace."""
    with tempfile.NamedTemporaryFile("w", suffix=".hosts") as f:
        try:
            p = subprocess.run(["unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/hosts', f.name],
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return 0
        return 1 if p.returncode == 0 else 0


def needs_private_hosts(test):
    """Skipped, with the reason, where the test cannot give the proxy its own /etc/hosts."""
    test = pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")(test)
    return pytest.mark.skipif(not _private_hosts_file(),
                              reason="cannot give the proxy its own /etc/hosts here: `unshare "
                                     "-m` + `mount --bind` fail (a container or chroot without "
                                     "CAP_SYS_ADMIN)")(test)


def with_hosts(tmp_path, monkeypatch, text):
    """Run the daemon with ${text} as its own /etc/hosts, in a private mount namespace so
    only the proxy sees it."""
    hosts = tmp_path / "hosts"
    hosts.write_text(text)
    wrapper = tmp_path / "proxy-with-hosts"
    wrapper.write_text("#!/bin/sh\nexec unshare -m sh -c 'mount --bind %s /etc/hosts && "
                       "exec \"$0\" \"$@\"' %s \"$@\"\n" % (hosts, daemon.PROXY_BIN))
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(daemon, "PROXY_BIN", str(wrapper))


@needs_private_hosts
def test_upstream_name_resolves_and_next_address_is_tried(upstream, proxy, tmp_path, monkeypatch):
    """multi.test resolves to a dead address first: the proxy moves on to the live one."""
    up = upstream("starttls")
    # ::1 sorts first (RFC 6724) and has nothing on the port: refused, then 127.0.0.1.
    with_hosts(tmp_path, monkeypatch, "::1 multi.test\n127.0.0.1 multi.test\n")
    px = proxy(up, upstream={"host": "multi.test", "server_name": "mail.test"},
               log={"level": "debug"})
    with px.client() as c:
        assert c.read_reply().code == 220
        c.expect("QUIT", 221)
    hs, = px.wait_event("tls.handshake")
    assert hs["addr"] == "127.0.0.1:%d" % up.port
    assert hs["upstream"] == "default" and hs["host"] == "multi.test"
    assert hs["device"] == "-"
    tried = [d for d in px.events("upstream.connect")]
    assert any("refused" in d.get("msg", "").lower() for d in tried), tried


@needs_private_hosts
def test_every_address_and_its_error_in_the_unreachable_line(proxy, tmp_path, monkeypatch):
    """Both addresses of multi.test refuse: upstream.fail names each with its error."""
    port = daemon.free_port()
    with_hosts(tmp_path, monkeypatch, "::1 multi.test\n127.0.0.1 multi.test\n")
    px = proxy(None, upstream={"host": "multi.test", "port": str(port),
                               "server_name": "mail.test"})
    with px.client() as c:
        r = c.read_reply()
        assert r.code == 421, r
    fail, = px.wait_event("upstream.fail")
    assert fail["reason"] == "connect", fail
    assert fail["detail"] == "[::1]:%d refused; 127.0.0.1:%d refused" % (port, port), fail


def test_unresolvable_upstream_gives_421(upstream, proxy):
    up = upstream("starttls")
    px = proxy(up, upstream={"host": "no-such-host.invalid"})
    with px.client() as c:
        r = c.read_reply()
        assert r.code == 421, r
    fail, = px.wait_event("upstream.fail")
    assert fail["reason"] == "resolve"
    assert up.connections == []


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_ipv6_listener_accepts_and_relays(upstream, proxy):
    up = upstream("starttls")
    px = proxy(up, proxy={"listen": "[::1]:0"})
    addr = [d["addr"] for d in px.events("proxy.listen")]
    assert addr and addr[0].startswith("[::1]:"), addr
    port = int(addr[0].rsplit(":", 1)[1])
    s = socket.create_connection(("::1", port), timeout=10)
    try:
        assert s.recv(512).startswith(b"220 ")
        s.sendall(b"QUIT\r\n")
        assert s.recv(512).startswith(b"221")
    finally:
        s.close()
    opened, = px.wait_event("session.open")
    assert opened["client"].startswith("[::1]:")

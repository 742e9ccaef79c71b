"""Promise 7: not an open relay.

Only the allowed client networks get a session (the rest get 554 5.7.1 and the upstream never
hears of them), IPv4 and IPv6 are judged apart, an IPv4 client on a dual-stack socket is judged
by its IPv4 address, and the proxy listens only where it was told to.
"""
import os
import socket
import subprocess
import time

import pytest

from adv import (EARLY, PROXY_BIN, listening_sockets, render_ini, wait_for)
from daemon import free_port
from adv import Proxy, sections


def has_ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


needs_v6 = pytest.mark.skipif(not has_ipv6_loopback(), reason="no ::1 on this host")


def expect_denied(px, **kw):
    with px.client(**kw) as c:
        try:
            c.send(EARLY)
        except OSError:
            pass
        r = c.read_reply()
        assert r.code == 554 and r.lines[0].startswith("5.7.1"), r
        assert c.at_eof()


def expect_allowed(px, **kw):
    with px.client(**kw) as c:
        assert c.read_reply().code == 220
        r = c.send_mail("a@example.test", ["b@example.test"], b"ok\r\n.\r\n", ehlo="d.test")
        assert r.code == 250, r
        c.expect("QUIT", 221)


def test_only_the_allowed_source_address_gets_a_session(upstream, proxy):
    up = upstream("starttls")
    px = proxy(up, proxy={"allow": "127.0.0.2/32"})
    expect_denied(px)                                   # from 127.0.0.1
    expect_denied(px, source="127.0.0.3")
    assert up.connections == [], "a denied client caused an upstream connection"
    expect_allowed(px, source="127.0.0.2")
    assert len(up.connections) == 1 and len(up.messages) == 1
    denies = px.events("session.deny")
    assert [d["client"].split(":")[0] for d in denies] == ["127.0.0.1", "127.0.0.3"]
    assert all(d["reason"] == "allow" for d in denies)


@needs_v6
@pytest.mark.parametrize("allow,v4,v6", [
    ("127.0.0.0/8", True, False),
    ("::1/128", False, True),
    ("127.0.0.0/8, ::1/128", True, True),
    ("::/0", False, True),
    ("0.0.0.0/0", True, False),
])
def test_ipv4_and_ipv6_clients_are_judged_by_their_own_family(upstream, proxy, allow, v4, v6):
    up = upstream("starttls")
    px = proxy(up, proxy={"listen": "127.0.0.1:0, [::1]:0", "allow": allow})
    for host, ok in (("127.0.0.1", v4), ("::1", v6)):
        (expect_allowed if ok else expect_denied)(px, host=host)
    assert len(up.connections) == v4 + v6


def _activated_proxy(tmp_path, certs, up, allow, name):
    """A proxy given a dual-stack socket bound to ::ffff:127.0.0.1 by 'systemd' (fd 3)."""
    ls = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    ls.bind(("::ffff:127.0.0.1", 0))
    ls.listen(16)
    port = ls.getsockname()[1]
    # No listen key: under socket activation the proxy then serves systemd's sockets only.
    s = sections(certs, up, proxy={"listen": None, "allow": allow})
    px = Proxy(str(tmp_path), s, name=name)
    px.workers = "1"
    fd = ls.fileno()
    px.argv = lambda: ["/bin/bash", "-c",
                       'exec 3<&%d %d<&-; export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" "$@"'
                       % (fd, fd), PROXY_BIN, "-c", px.conf]
    px.popen_kw = {"pass_fds": (fd,)}
    try:
        px.start()
    finally:
        ls.close()
    return px, port


@pytest.mark.parametrize("allow,ok", [
    ("127.0.0.1/32", True),
    ("::ffff:127.0.0.0/104", True),           # a v4-mapped rule is folded to 127.0.0.0/8
    ("::1/128", False),
    ("::/0", False),                           # an IPv4 client is not "any IPv6"
    ("10.0.0.0/8", False),
])
def test_v4_mapped_client_on_a_dual_stack_socket_is_judged_as_ipv4(tmp_path, certs, upstream,
                                                                   allow, ok):
    """The daemon binds IPv6 with IPV6_V6ONLY, so a v4-mapped peer only happens on a socket
    handed over by systemd (socket activation); that is the case built here."""
    up = upstream("starttls")
    px, port = _activated_proxy(tmp_path, certs, up, allow, "mapped%d" % ok)
    try:
        assert px.events("proxy.listen")[0].get("from") == "systemd", px.stderr()
        (expect_allowed if ok else expect_denied)(px, port=port)
        ev = px.wait_event("session.open" if ok else "session.deny")
        assert ev and ev[0]["client"].startswith("[::ffff:127.0.0.1]:"), ev
        assert len(up.connections) == int(ok)
    finally:
        px.stop()
        from adv import record_log
        record_log(px.stderr())
    assert px.returncode == 0, px.stderr()


@needs_v6
def test_daemon_listens_only_on_the_configured_addresses(upstream, proxy):
    up = upstream("starttls")
    px = proxy(up, proxy={"listen": "127.0.0.1:0, [::1]:0", "workers": "2"})
    pids = [px.proc.pid] + px.worker_pids()
    want = {("127.0.0.1", px.port_of("127.0.0.1")), ("::1", px.port_of("::1"))}
    assert wait_for(lambda: listening_sockets(pids) == want, 5), \
        "listening on %r, configured %r" % (listening_sockets(pids), want)


def test_v4_mapped_listen_address_is_not_silently_widened(tmp_path, certs):
    """listen = [::ffff:127.0.0.1]:port asks for an IPv4 address through IPv6: the daemon
    either listens exactly there or refuses to start; it never listens on more."""
    port = free_port()
    s = sections(certs, None, proxy={"listen": "[::ffff:127.0.0.1]:%d" % port},
                 upstream={"port": "587"})
    path = tmp_path / "m.ini"
    path.write_text(render_ini(s))
    p = subprocess.Popen([PROXY_BIN, "-c", str(path)], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        running = p.poll() is None
        if running:
            got = listening_sockets([p.pid] + _children(p.pid))
            assert got <= {("::ffff:127.0.0.1", port), ("127.0.0.1", port)}, got
        else:
            assert p.returncode != 0
    finally:
        if p.poll() is None:
            p.terminate()
            p.wait(10)
        out = p.stdout.read().decode(errors="replace")
        p.stdout.close()
        from adv import record_log
        record_log(out)




def _children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out

"""Self-tests of the gateway harness (namespaces, routing, the nftables rules), with a
Python stand-in for the proxy's transparent listener; no daemon.

If these fail, the daemon tests beside them cannot be trusted: they prove the device's
packets really cross the gateway, that the redirect and tproxy rules really hand the
device's port-25 connections to a listener on the gateway, and that such a listener can
read the original destination the way the daemon must.
"""
import os
import re
import smtplib
import socket
import subprocess
import time

import pytest

import netns
from conftest import REPO, TPORT

FAMILIES = [pytest.param(socket.AF_INET, netns.SERVER4, netns.DEVICE4, id="ipv4"),
            pytest.param(socket.AF_INET6, netns.SERVER6, netns.DEVICE6, id="ipv6")]


def test_device_reaches_server_through_gateway_unchanged(gw, server):
    """No rule installed: the device's session arrives at the server from the device's own
    address (routed, not translated), so any change the rules make is theirs."""
    up = server()
    with gw.device.run(smtplib.SMTP, netns.SERVER4, 25, local_hostname="printer.test",
                       timeout=20) as s:
        s.sendmail("printer@example.test", ["office@example.test"], b"Subject: t\r\n\r\nhi\r\n")
    assert up.wait_closed(20)
    c, = up.connections
    assert c.peer[0] == netns.DEVICE4 and not c.tls
    assert [m.rcpts for m in up.messages] == [["office@example.test"]]


def test_hosts_are_separate_and_gateway_forwards(gw):
    """Each namespace has only its own addresses, the gateway forwards (IPv4 and IPv6), and
    `ip netns exec` (how the daemon is started) lands a process on the gateway."""
    out = gw.gateway.sh("ip", "-o", "addr").stdout
    assert netns.GW_DEV4 in out and netns.GW_SRV6 in out and netns.SERVER4 not in out
    assert netns.DEVICE4 not in gw.server.sh("ip", "-o", "addr").stdout
    assert gw.gateway.sh("sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "1"
    assert gw.gateway.sh("sysctl", "-n", "net.ipv6.conf.all.forwarding").stdout.strip() == "1"
    p = subprocess.run(gw.gateway.argv(["/usr/bin/python3", "-c",
                                        "import socket; s = socket.socket(); "
                                        "s.bind(('%s', 0)); print('ok')" % netns.GW_SRV4]),
                       capture_output=True, text=True, timeout=20)
    assert p.stdout.strip() == "ok", p.stderr


def _intercepted(gw, mode, family, dst, src):
    """Install `mode`, listen on the gateway like the proxy would, connect from the device
    to dst:25; return (peer, local address, SO_ORIGINAL_DST or None) the listener saw."""
    gw.intercept(mode, TPORT)
    lsock = gw.gateway.run(netns.transparent_listener, family, TPORT, mode == "tproxy")
    lsock.settimeout(20)
    try:
        c = gw.device.run(socket.create_connection, (dst, 25), 20)
        try:
            a, peer = lsock.accept()
        finally:
            c.close()
        with a:
            orig = netns.original_dst(a) if mode != "tproxy" else None
            return peer[:2], a.getsockname()[:2], orig
    finally:
        lsock.close()


@pytest.mark.parametrize("mode", ["redirect", "dnat"])
@pytest.mark.parametrize("family,dst,src", FAMILIES)
def test_nat_hands_connection_to_listener_with_original_destination(gw, server, family, dst,
                                                                    src, mode):
    """nft `redirect` / `dnat`: the gateway's listener gets the device's connection to the
    server's port 25 (the server gets nothing), addressed to the gateway itself, and
    SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST gives the server's address and port."""
    up = server(addr=dst)
    peer, local, orig = _intercepted(gw, mode, family, dst, src)
    assert peer[0] == src
    assert local == ((netns.GW_DEV4 if family == socket.AF_INET else netns.GW_DEV6), TPORT)
    assert orig == (dst, 25)
    assert up.connections == []


@pytest.mark.parametrize("family,dst,src", FAMILIES)
def test_tproxy_hands_connection_to_transparent_socket_as_original_destination(gw, server,
                                                                              family, dst,
                                                                              src):
    """nft `tproxy` + fwmark policy routing: an IP_TRANSPARENT listener on the gateway gets
    the device's connection untranslated: its local address is the server's address and
    port 25 (the server gets nothing)."""
    up = server(addr=dst)
    peer, local, orig = _intercepted(gw, "tproxy", family, dst, src)
    assert peer[0] == src
    assert local == (dst, 25)
    assert up.connections == []


@pytest.mark.parametrize("mode,transparent", [("tproxy", False), ("tproxy", None),
                                               ("redirect", None), ("dnat", None)])
def test_interception_fails_closed_without_listener(gw, server, mode, transparent):
    """With the rules installed but no proxy to take the connection (none listening, or
    under tproxy a listener without IP_TRANSPARENT, which the tproxy rule ignores), the
    device's connection is refused and the server gets nothing: the forward chain's reject
    keeps plaintext from going past the gateway. (So under tproxy a daemon test that passes
    proves the daemon's listener is transparent.)"""
    up = server()
    gw.intercept(mode, TPORT)
    lsock = None
    if transparent is not None:
        lsock = gw.gateway.run(netns.transparent_listener, socket.AF_INET, TPORT, transparent)
    try:
        with pytest.raises(ConnectionRefusedError):
            gw.device.run(socket.create_connection, (netns.SERVER4, 25), 20).close()
    finally:
        if lsock is not None:
            lsock.close()
    assert up.connections == []


def test_rules_are_removed_between_tests(gw, server):
    """clear_intercept() leaves no rule and no tproxy route: the device reaches the server."""
    gw.intercept("tproxy", TPORT)
    gw.clear_intercept()
    assert "table" not in gw.gateway.sh("nft", "list", "ruleset").stdout
    assert "fwmark" not in gw.gateway.sh("ip", "rule").stdout
    up = server()
    c = gw.device.run(socket.create_connection, (netns.SERVER4, 25), 20)
    c.close()
    assert up.wait_connections(1, 20)


def test_leftovers_of_dead_runs_are_removed_live_ones_kept(topo):
    """Namespaces named for a process that is gone (a run that was killed) are removed by
    cleanup_leftovers(); this run's own, whose owner lives, are not."""
    p = subprocess.Popen(["/bin/true"])
    p.wait(10)
    dead = "%s%d-%s-dev" % (netns.NS_PREFIX, p.pid, "0dead0")
    subprocess.run(["ip", "netns", "add", dead], check=True, timeout=20)
    try:
        removed = netns.cleanup_leftovers()
        assert dead in removed
        assert not os.path.exists(os.path.join(netns.NETNS_DIR, dead))
        assert all(os.path.exists(h.path) for h in topo.hosts)
    finally:
        subprocess.run(["ip", "netns", "del", dead], capture_output=True, timeout=20)


def test_topology_destroy_removes_namespaces_and_processes():
    """A second topology (unique names beside the session's) is torn down whole: its
    namespaces are gone and a process left running in one is killed."""
    t = netns.Topology().create()
    try:
        p = subprocess.Popen(t.gateway.argv(["sleep", "60"]))
        for _ in range(200):        # until `ip netns exec` has moved it there
            if subprocess.run(["ip", "netns", "identify", str(p.pid)], capture_output=True,
                              text=True, timeout=20).stdout.strip() == t.gateway.name:
                break
            time.sleep(0.05)
    finally:
        t.destroy()
    assert p.wait(10) == -9
    assert not any(os.path.exists(h.path) for h in t.hosts)


def test_daemon_runs_on_gateway_and_relays_device_mail(gw, server, gateway_proxy, device):
    """The daemon started through `ip netns exec` serves on the gateway: the device, talking
    to the gateway's address directly (no rule, a plain listener), gets its message to
    [upstream] on the server host over TLS. (The plumbing the interception tests rely on,
    independent of transparent mode.)"""
    up = server(addr=netns.SERVER_EXTRA4, port=587)
    p = gateway_proxy(listener={"transparent": None})
    c = device(netns.GW_DEV4, TPORT)
    assert c.read_reply().code == 220
    r = c.send_mail("printer@example.test", ["office@example.test"], b"Subject: t\r\n\r\nx\r\n.\r\n")
    assert r.code == 250, r.raw
    c.cmd("QUIT")
    assert up.wait_messages(1, 20)
    assert up.connections[0].tls and up.connections[0].peer[0] == netns.GW_SRV4
    o = p.wait_event("session.open", timeout=20)
    assert o and o[0]["client"].startswith(netns.DEVICE4 + ":"), p.stderr()[-3000:]


def test_readme_shows_the_rules_these_tests_load():
    """README's "Transparent interception" snippets are, byte for byte, the rulesets and
    routes this suite installs (lan0, port 10025), so what an admin copies is what was
    tested."""
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    sec = text[text.index("## Transparent interception"):]
    sec = sec[:sec.index("\n## ")]
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```$", sec, re.S | re.M)
    t = netns.Topology()
    for rules in (t.redirect_rules(TPORT), t.tproxy_rules(TPORT)):
        assert rules in blocks
    routes = "".join("ip %s\n" % " ".join(r) for r in t.TPROXY_ROUTES)
    assert routes in blocks
    assert "dnat ip to %s:%d" % (netns.GW_DEV4, TPORT) in sec
    assert "dnat ip6 to [%s]:%d" % (netns.GW_DEV6, TPORT) in sec
    assert "dnat ip to %s:%d" % (netns.GW_DEV4, TPORT) in t.dnat_rules(TPORT)

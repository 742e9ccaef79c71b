"""Transparent interception on a gateway, for real: the device keeps its configured mail
server, the gateway's nftables rules (redirect or tproxy, installed by each test) hand its
port-25 connection to the proxy's `transparent = yes` listener, and the proxy picks the
upstream from the [intercept NAME] rules by the original destination.

The device is an unmodified plaintext client (smtplib, no STARTTLS) on the device host; the
mail server is the test upstream on the server host, which records whether the session it
got was TLS and who it came from (the gateway's address: the proxy's own connection).
"""
import os
import re
import smtplib
import subprocess
import tempfile

import pytest

import netns
from conftest import PROXY_BIN, REPO, TPORT

BODY = b"Subject: from the printer\r\n\r\nscan attached\r\n"
MODES = ["redirect", "tproxy"]


def _transparent_support():
    """None when the daemon accepts `transparent = yes` and [intercept NAME] (by -t), else
    what it said."""
    if not os.access(PROXY_BIN, os.X_OK):
        return None         # the proxy fixture fails loudly: not built
    conf = ("[proxy]\nhostname = gw.test\n[upstream]\nhost = 127.0.0.1\nport = 587\n"
            "[listener t]\nlisten = 127.0.0.1:0\ntransparent = yes\n"
            "[intercept all]\ndestination = 0.0.0.0/0:25\nupstream = original\n")
    fd, path = tempfile.mkstemp(prefix="transparent-probe-", suffix=".ini")
    with os.fdopen(fd, "w") as f:
        f.write(conf)
    try:
        p = subprocess.run([PROXY_BIN, "-t", "-c", path], capture_output=True, text=True,
                           timeout=20)
    finally:
        os.unlink(path)
    out = p.stdout + p.stderr
    if "unknown key 'transparent'" in out or "unknown section [intercept" in out:
        return out.strip()
    return None


_UNSUPPORTED = _transparent_support()
pytestmark = pytest.mark.skipif(_UNSUPPORTED is not None,
                                reason="needs transparent listener support (smtp-tls-proxy "
                                "-t: %s)" % ((_UNSUPPORTED or "").splitlines() or [""])[0])


def sendmail(topo, dst, port=25, rcpt="office@example.test"):
    """The device's unmodified plaintext session to dst:port (smtplib, no STARTTLS);
    smtplib's refused-recipients dict (empty: accepted)."""
    def go():
        with smtplib.SMTP(dst, port, local_hostname="printer.lan", timeout=30) as s:
            return s.sendmail("printer@example.test", [rcpt], BODY)
    return topo.device.run(go)


def intercept(dest, upstream="original", **kw):
    return dict({"destination": dest, "upstream": upstream}, **kw)


def one_session(proxy, event, **match):
    got = proxy.wait_event(event, timeout=20, **match)
    assert got, "no %s %r in the log:\n%s" % (event, match, proxy.stderr()[-4000:])
    return got[0]


@pytest.mark.parametrize("mode", MODES + ["dnat"])
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_device_plaintext_arrives_as_tls_at_original_server(gw, server, gateway_proxy, mode,
                                                            family):
    """The device speaks plaintext to the server's port 25; the gateway intercepts it and the
    server host receives the message over TLS, from the gateway (the proxy's own
    connection), never in plaintext; the logs name the original destination."""
    dst, net, gw_wan = ((netns.SERVER4, "203.0.113.0/24:25", netns.GW_SRV4)
                        if family == "ipv4" else
                        (netns.SERVER6, "[2001:db8:2::/64]:25", netns.GW_SRV6))
    up = server(addr=dst)
    gw.intercept(mode, TPORT)
    p = gateway_proxy(more={"intercept isp": intercept(net)})
    assert sendmail(gw, dst) == {}
    assert up.wait_messages(1, 20)
    c, = up.connections
    assert c.tls and c.peer[0] == gw_wan
    assert c.verbs(False) == ["EHLO", "STARTTLS"]       # nothing of the device's in plaintext
    m, = up.messages
    assert m.rcpts == ["office@example.test"] and m.body.endswith(b"scan attached\r\n")
    orig = ("%s:25" if family == "ipv4" else "[%s]:25") % dst
    client = netns.DEVICE4 if family == "ipv4" else netns.DEVICE6
    o = one_session(p, "session.open", orig_dst=orig)
    assert o["client"].rsplit(":", 1)[0].strip("[]") == client
    assert one_session(p, "message", orig_dst=orig)["result"] == "ok"


@pytest.mark.parametrize("starttls", [True, False], ids=["tls", "no-starttls"])
def test_logs_carry_orig_dst(gw, server, gateway_proxy, starttls):
    """session.open (with the rule that matched) and message carry orig_dst=IP:PORT; for
    `original` the upstream's own lines (tls.handshake, or upstream.fail when it had no
    STARTTLS) name that same destination as addr=. (session.deny: the no-rule test.)"""
    server(addr=netns.SERVER4, starttls=starttls)
    gw.intercept("redirect", TPORT)
    p = gateway_proxy(more={"intercept isp": intercept("203.0.113.0/24:25")})
    orig = "%s:25" % netns.SERVER4
    if starttls:
        assert sendmail(gw, netns.SERVER4) == {}
    else:
        with pytest.raises(smtplib.SMTPConnectError):
            sendmail(gw, netns.SERVER4)
    assert p.wait_event("session.close", timeout=20)
    o, = p.events("session.open")
    assert (o.get("orig_dst"), o.get("intercept")) == (orig, "isp")
    if starttls:
        m, = p.events("message")
        assert m.get("orig_dst") == orig and m.get("upstream") == "original"
        assert [d.get("addr") for d in p.events("tls.handshake")] == [orig]
    else:
        assert [d.get("addr") for d in p.events("upstream.fail")] == [orig]


@pytest.mark.parametrize("mode", MODES)
def test_intercept_rule_sends_to_named_upstream_with_its_credentials(gw, server, gateway_proxy,
                                                                     certs, mode):
    """`upstream = provider`: everything to the ISP's port 25 goes to the provider's 587 with
    the provider's credentials; the host the device named is never contacted."""
    isp = server(addr=netns.SERVER4)
    provider = server(addr=netns.SERVER_EXTRA4, port=587)
    gw.intercept(mode, TPORT)
    p = gateway_proxy(more={
        "upstream provider": {"host": netns.SERVER_EXTRA4, "port": "587", "tls": "starttls",
                              "server_name": "mail.test", "ca_file": certs["ca"][0],
                              "username": provider.user, "password": provider.password},
        "intercept isp": intercept("203.0.113.0/24:25", "provider")})
    assert sendmail(gw, netns.SERVER4) == {}
    assert provider.wait_messages(1, 20)
    c, = provider.connections
    assert c.tls and c.auth and c.auth[0][3] is True
    assert isp.connections == []
    one_session(p, "message", orig_dst="%s:25" % netns.SERVER4, upstream="provider")


def test_most_specific_rule_wins_then_port(gw, server, gateway_proxy):
    """Rules: 203.0.113.0/24:25 -> provider, 203.0.113.25 (any port) -> original,
    203.0.113.26 -> provider, 203.0.113.26:25 -> original. To .25:25 the /32 beats the /24
    (original: the server at .25 gets it); to .26:25 the rule with the port beats the one
    without (original again: .26 has no server, so the device gets 421, and the provider
    nothing from it)."""
    srv = server(addr=netns.SERVER4)
    provider = server(addr=netns.SERVER_EXTRA4, port=587)
    gw.intercept("redirect", TPORT)
    p = gateway_proxy(upstream={"host": netns.SERVER_EXTRA4, "port": "587"}, more={
        "intercept isp": intercept("203.0.113.0/24:25", "default"),
        "intercept server": intercept("203.0.113.25"),
        "intercept other-any-port": intercept("203.0.113.26", "default"),
        "intercept other-smtp": intercept("203.0.113.26:25")})
    assert sendmail(gw, netns.SERVER4) == {}
    assert srv.wait_messages(1, 20) and srv.connections[0].tls
    with pytest.raises(smtplib.SMTPConnectError) as e:
        sendmail(gw, "203.0.113.26")
    assert e.value.smtp_code == 421
    assert provider.connections == []
    one_session(p, "session.open", orig_dst="203.0.113.26:25")


@pytest.mark.parametrize("mode", MODES)
def test_original_require_without_starttls_fails_closed_421(gw, server, gateway_proxy, mode,
                                                            device):
    """`tls_policy = require` (the default) and a server that offers no STARTTLS: the device
    is greeted 421 and nothing it says reaches the server."""
    up = server(addr=netns.SERVER4, starttls=False)
    gw.intercept(mode, TPORT)
    p = gateway_proxy(more={"intercept isp": intercept("203.0.113.0/24:25")})
    c = device(netns.SERVER4)
    g = c.read_reply()
    assert g.code == 421, g.raw
    assert c.at_eof(20)
    assert up.wait_closed(20)
    assert [v for v in up.connections[0].verbs() if v not in ("EHLO", "QUIT")] == []
    assert up.all_messages == []
    f = one_session(p, "upstream.fail", addr="%s:25" % netns.SERVER4)
    assert f.get("reason") == "no-starttls", f


def test_original_require_refuses_unverified_server(gw, server, gateway_proxy, device):
    """require: a server whose certificate does not match server_name gets no mail; 421."""
    up = server(addr=netns.SERVER4, cert="wrongname")
    gw.intercept("redirect", TPORT)
    p = gateway_proxy(more={"intercept isp": intercept("203.0.113.0/24:25")})
    c = device(netns.SERVER4)
    assert c.read_reply().code == 421
    assert up.wait_closed(20) and up.all_messages == []
    assert one_session(p, "upstream.fail", addr="%s:25" % netns.SERVER4)["reason"] == "verify"


@pytest.mark.parametrize("mode", MODES)
def test_original_opportunistic_relays_plaintext_when_no_starttls_and_warns(gw, server,
                                                                            gateway_proxy,
                                                                            mode):
    """`tls_policy = opportunistic` (RFC 7435) and a server without STARTTLS: the message is
    relayed in plaintext, and the log says so at warn with the original destination."""
    up = server(addr=netns.SERVER4, starttls=False)
    gw.intercept(mode, TPORT)
    p = gateway_proxy(more={"intercept isp": intercept("203.0.113.0/24:25",
                                                       tls_policy="opportunistic")})
    assert sendmail(gw, netns.SERVER4) == {}
    assert up.wait_messages(1, 20)
    assert not up.connections[0].tls
    w = one_session(p, "upstream.plaintext", addr="%s:25" % netns.SERVER4)
    assert w["level"] == "warn"


def test_original_opportunistic_uses_tls_when_offered(gw, server, gateway_proxy):
    """opportunistic with a server that offers STARTTLS and a certificate that verifies: TLS,
    and no plaintext warning."""
    up = server(addr=netns.SERVER4)
    gw.intercept("redirect", TPORT)
    p = gateway_proxy(more={"intercept isp": intercept("203.0.113.0/24:25",
                                                       tls_policy="opportunistic")})
    assert sendmail(gw, netns.SERVER4) == {}
    assert up.wait_messages(1, 20) and up.connections[0].tls
    assert p.events("upstream.plaintext") == []


def test_original_opportunistic_failed_verification_logged_not_fatal(gw, server,
                                                                     gateway_proxy):
    """opportunistic and a certificate that does not match server_name: the message goes
    over TLS all the same, and tls.unverified (warn) names the destination and why."""
    up = server(addr=netns.SERVER4, cert="wrongname")
    gw.intercept("redirect", TPORT)
    p = gateway_proxy(more={"intercept isp": intercept("203.0.113.0/24:25",
                                                       tls_policy="opportunistic")})
    assert sendmail(gw, netns.SERVER4) == {}
    assert up.wait_messages(1, 20) and up.connections[0].tls
    u = one_session(p, "tls.unverified", host=netns.SERVER4)
    assert u["level"] == "warn" and "mismatch" in u.get("verify", ""), u


@pytest.mark.parametrize("mode", MODES)
def test_no_matching_rule_554_and_logged(gw, server, gateway_proxy, device, mode):
    """A destination no [intercept] covers: 554 5.7.1 to the device, no upstream contact,
    `session.deny reason=no-intercept-rule orig_dst=...`."""
    up = server(addr=netns.SERVER4)
    gw.intercept(mode, TPORT)
    p = gateway_proxy(more={"intercept isp": intercept("203.0.113.0/24:25")})
    c = device(netns.UNRULED4)
    g = c.read_reply()
    assert g.code == 554 and g.first.startswith("554 5.7.1"), g.raw
    assert c.at_eof(20)
    one_session(p, "session.deny", reason="no-intercept-rule",
                orig_dst="%s:25" % netns.UNRULED4)
    assert up.connections == []


@pytest.mark.parametrize("mode,port", [("redirect", TPORT), ("tproxy", TPORT),
                                       ("redirect", 25), ("tproxy", 25)])
def test_original_destination_is_the_proxy_itself_554_loop(gw, server, gateway_proxy, device,
                                                           mode, port):
    """The device's original destination is one of the proxy's own sockets: the transparent
    listener's port on the gateway's address (no rule rewrote it), or the gateway's port 25
    where the proxy also listens ([proxy] listen, intercepted all the same). With a
    catch-all `original` rule the proxy would connect to itself; it refuses with 554
    5.7.1, reason=loop, and opens no session."""
    gw.intercept(mode, TPORT)
    p = gateway_proxy(proxy={"listen": "0.0.0.0:25"},
                      more={"intercept all": intercept("0.0.0.0/0")})
    c = device(netns.GW_DEV4, port)
    g = c.read_reply()
    assert g.code == 554 and g.first.startswith("554 5.7.1"), g.raw
    assert c.at_eof(20)
    one_session(p, "session.deny", reason="loop", orig_dst="%s:%d" % (netns.GW_DEV4, port))
    assert p.events("session.open") == []


def test_proxy_own_outbound_intercepted_is_a_loop(gw, server, gateway_proxy, device):
    """A gateway rule that also catches the proxy's own outbound port 25 (nat output) turns
    its connection to the server back to itself: refused as a loop, not relayed in circles;
    the device never gets a 220 and the server nothing."""
    up = server(addr=netns.SERVER4)
    gw.intercept("redirect", TPORT, extra=(
        "table inet smtp_intercept_out {\n"
        "\tchain output {\n"
        "\t\ttype nat hook output priority -100; policy accept;\n"
        "\t\ttcp dport 25 redirect to :%d\n"
        "\t}\n"
        "}\n" % TPORT))
    # The proxy's own addresses are allowed, so only loop detection can refuse the
    # connection it makes to itself.
    p = gateway_proxy(proxy={"allow": "%s, %s/32, 127.0.0.0/8" % (netns.DEVICE_NET4,
                                                                   netns.GW_SRV4)},
                      more={"intercept isp": intercept("203.0.113.0/24:25")})
    c = device(netns.SERVER4)
    g = c.read_reply()
    assert g.code in (421, 554), g.raw
    one_session(p, "session.deny", reason="loop")
    assert len(p.events("session.open")) <= 2
    assert up.connections == []


def test_allow_applies_to_transparent_listener(gw, server, gateway_proxy, device):
    """A device outside `allow` is refused on a transparent listener as on any other: 554,
    reason=allow, no upstream contact, even though a rule covers its destination."""
    up = server(addr=netns.SERVER4)
    gw.intercept("redirect", TPORT)
    p = gateway_proxy(proxy={"allow": "10.0.0.0/8"},
                      more={"intercept isp": intercept("203.0.113.0/24:25")})
    c = device(netns.SERVER4)
    assert c.read_reply().code == 554
    one_session(p, "session.deny", reason="allow")
    assert up.connections == []


def test_readme_example_configuration_passes_check(tmp_path):
    """The README's example for a gateway is a configuration `-t` accepts (its password file
    made here)."""
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    sec = text[text.index("## Transparent interception"):]
    ini = re.search(r"^```ini\n(.*?)^```$", sec, re.S | re.M).group(1)
    pw = tmp_path / "provider.password"
    pw.write_text("secret\n")
    pw.chmod(0o600)
    assert "/etc/smtp-tls-proxy/provider.password" in ini
    conf = tmp_path / "gateway.ini"
    conf.write_text(ini.replace("/etc/smtp-tls-proxy/provider.password", str(pw)))
    p = subprocess.run([PROXY_BIN, "-t", "-c", str(conf)], capture_output=True, text=True,
                       timeout=20)
    assert p.returncode == 0 and "configuration OK" in p.stdout + p.stderr, p.stdout + p.stderr

"""Fixtures for the gateway tests: transparent interception for real.

A device, a gateway and a mail server are network namespaces joined by veth pairs
(tests/lib/netns.py); the test installs nftables redirect or tproxy rules on the gateway,
runs the daemon there (`ip netns exec`), the test upstream (tests/lib/upstream.py) on the
server's addresses and the device's SMTP client in the device namespace, all from this
process.

Run as root with Debian's interpreter:  /usr/bin/python3 -m pytest -q tests/gateway
PROXY_BIN=/path/to/smtp-tls-proxy selects another build.

Where namespaces or nftables are not available (not root, no nft, no namespaces) every
test is skipped with the reason; with CI set in the environment that is a failure instead,
because CI runs as root on Debian with `make deps` done and must run these.
"""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))

import netns  # noqa: E402
from daemon import PROXY_BIN, Proxy, proxy_factory  # noqa: E402,F401
from fixtures import certs, upstream  # noqa: E402,F401
from smtpwire import Client  # noqa: E402

# The port the gateway's nftables rules send intercepted connections to: the proxy's
# transparent listener (and the harness self-test's stand-in for it).
TPORT = 10025


@pytest.fixture(scope="session")
def topo():
    """The three hosts, made once per run; each test installs the rules it needs."""
    removed = netns.cleanup_leftovers()
    if removed:
        print("removed namespaces left by earlier runs: %s" % ", ".join(removed))
    why = netns.problem()
    if why:
        if os.environ.get("CI"):
            pytest.fail("gateway tests cannot run in CI: " + why, pytrace=False)
        pytest.skip("gateway tests need network namespaces and nftables: " + why)
    t = netns.Topology().create()
    restore = netns.install_sigterm_cleanup(t)
    try:
        yield t
    finally:
        restore()
        t.destroy()


@pytest.fixture
def gw(topo):
    """The topology with no interception installed; whatever a test installs is removed
    after it."""
    topo.clear_intercept()
    yield topo
    topo.clear_intercept()


@pytest.fixture
def server(topo, upstream):
    """Factory: server(addr=SERVER4, port=25, mode="starttls", cert="good", **faults) ->
    a started test upstream (the shared `upstream` fixture, made on the server host, so
    its socket is there) listening on the server host's addr:port."""

    def make(addr=netns.SERVER4, port=25, mode="starttls", cert="good", **kw):
        kw.setdefault("io_timeout", 20)
        return topo.server.run(upstream, mode, cert, host=addr, port=port, **kw)

    return make


@pytest.fixture
def device(topo):
    """Factory: device(host, port=25, timeout=20) -> smtpwire.Client connected from the
    device host (its socket lives in the device namespace)."""
    made = []

    def connect(host, port=25, timeout=20):
        c = topo.device.run(Client, port, host=host, timeout=timeout)
        made.append(c)
        return c

    yield connect
    for c in made:
        c.close()


class GatewayProxy(Proxy):
    """The daemon run on the gateway host (`ip netns exec GATEWAY smtp-tls-proxy ...`)."""
    host = None

    def argv(self):
        return self.host.argv(super().argv())


def gateway_sections(certs, up=None, more=None, proxy=None, upstream=None, listener=None,
                     log=None):
    """Config of a proxy on the gateway: a transparent listener on TPORT (IPv4 and IPv6)
    for the device network, [upstream] (the TLS settings `original` uses, and the default
    named upstream) at SERVER_EXTRA4:587, and `more` sections ({"intercept NAME": {...}})."""
    s = {
        "proxy": {"hostname": "gateway.test",
                  "allow": "%s, %s" % (netns.DEVICE_NET4, netns.DEVICE_NET6), "timeout": "20"},
        "upstream": {"host": netns.SERVER_EXTRA4, "port": "587", "tls": "starttls",
                     "server_name": "mail.test", "verify": "yes",
                     "ca_file": certs["ca"][0]},
        "listener intercept": {"listen": "0.0.0.0:%d, [::]:%d" % (TPORT, TPORT),
                               "transparent": "yes"},
        "log": {"level": "debug", "format": "text"},
    }
    for name, keys in (("proxy", proxy), ("upstream", upstream),
                       ("listener intercept", listener), ("log", log)):
        s[name].update(keys or {})
    s.update(more or {})
    return s


@pytest.fixture
def gateway_proxy(tmp_path, topo, certs):
    """Factory: gateway_proxy(more={"intercept NAME": {...}}, proxy=..., upstream=...,
    listener=..., start=True) -> Proxy running on the gateway host. At teardown each must
    exit 0 with no crash report and no worker left."""
    cls = type("GatewayProxyHere", (GatewayProxy,), {"host": topo.gateway})
    factory = proxy_factory(tmp_path, lambda up, **kw: gateway_sections(certs, up, **kw),
                            cls=cls)
    make = next(factory)
    yield lambda **kw: make(None, **kw)
    next(factory, None)

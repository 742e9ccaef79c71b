"""Three hosts in network namespaces: a device, a gateway and a mail server, for real tests
of transparent interception (nftables redirect and tproxy) with no mocks.

    device  192.168.10.10/24  fd00:10::10/64        eth0
       | veth
    gateway 192.168.10.1/24   fd00:10::1/64         lan0  (forwards; runs the proxy and nftables)
            203.0.113.1/24    2001:db8:2::1/64      wan0
       | veth
    server  203.0.113.25/24   2001:db8:2::25/64     (more addresses: SERVER_EXTRA)

The device LAN is private (RFC 1918, RFC 4193), as on a real gateway (the proxy calls an
`allow` with a public network and upstream credentials an open relay); the server side is
in documentation ranges (RFC 5737, RFC 3849), standing for the Internet. The addresses exist
only inside the namespaces, so runs never collide on them. Namespace names carry a prefix, the owning
process id and a random tag (NS_PREFIX + "<pid>-<tag>-dev"): two runs never share one, and
a run that was killed leaves namespaces whose owner is dead, which the next run removes
(cleanup_leftovers). Interface names are chosen inside the namespaces, never in the host's.

Code runs in a namespace two ways:
  Host.run(fn, *args)   fn in a fresh thread of this process that has joined the namespace
                        (setns(2) is per thread); sockets it creates stay in that namespace,
                        so an in-process server or client made there is used from anywhere
  Host.argv(cmd)        ["ip", "netns", "exec", NAME] + cmd, for a subprocess (the daemon)

Every command and every wait is bounded. Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN), ip
(iproute2) and nft (nftables); problem() says what is missing.
"""
import ctypes
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

NS_PREFIX = "smtptls-gw-"
NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
CMD_TIMEOUT = 20

DEVICE4, DEVICE6 = "192.168.10.10", "fd00:10::10"
GW_DEV4, GW_DEV6 = "192.168.10.1", "fd00:10::1"
GW_SRV4, GW_SRV6 = "203.0.113.1", "2001:db8:2::1"
SERVER4, SERVER6 = "203.0.113.25", "2001:db8:2::25"
# Second addresses on the server host: a "provider" behind a named upstream, and a
# host with no rule (addresses the device can send to but no [intercept] covers).
SERVER_EXTRA4, SERVER_EXTRA6 = "203.0.113.50", "2001:db8:2::50"
UNRULED4 = "198.51.100.7"
DEVICE_NET4, DEVICE_NET6 = "192.168.10.0/24", "fd00:10::/64"
SERVER_NET4, SERVER_NET6 = "203.0.113.0/24", "2001:db8:2::/64"

# Linux ABI constants Python's socket module does not export.
SO_ORIGINAL_DST = 80            # SOL_IP, netfilter_ipv4.h
IP6T_SO_ORIGINAL_DST = 80       # SOL_IPV6, netfilter_ipv6/ip6_tables.h
IP_TRANSPARENT = 19
IPV6_TRANSPARENT = 75
TPROXY_MARK = 1
TPROXY_TABLE = 100
NFT_TABLE = "smtp_intercept"
LAN_IF, WAN_IF = "lan0", "wan0"     # the gateway's device side and server side

_libc = ctypes.CDLL(None, use_errno=True)


def _run(argv, timeout=CMD_TIMEOUT, check=True, input=None):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input,
                       stdin=None if input is not None else subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(argv), p.returncode,
                                                 (p.stderr or p.stdout).strip()))
    return p


def problem():
    """Why namespaces with nftables cannot be built here (a sentence), or None when they
    can: a namespace is made, given an nftables nat and tproxy rule, and removed."""
    if os.geteuid() != 0:
        return "not root: network namespaces and nftables need CAP_SYS_ADMIN and CAP_NET_ADMIN"
    for tool, pkg in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return "%s not found (Debian package %s; make deps installs it)" % (tool, pkg)
    name = "%sprobe-%d-%s" % (NS_PREFIX, os.getpid(), secrets.token_hex(3))
    try:
        _run(["ip", "netns", "add", name])
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        return "cannot create a network namespace: %s" % e
    try:
        _run(["ip", "netns", "exec", name, "nft", "-f", "-"], input=(
            "table inet probe {\n"
            " chain n { type nat hook prerouting priority dstnat; tcp dport 25 redirect to :1; }\n"
            " chain m { type filter hook prerouting priority mangle;\n"
            "  tcp dport 25 tproxy to :1 meta mark set 1 accept; }\n"
            "}\n"))
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        return "nftables redirect/tproxy unavailable in a namespace: %s" % e
    finally:
        _run(["ip", "netns", "del", name], check=False)
    return None


def _owner(name):
    m = re.match(re.escape(NS_PREFIX) + r"(?:probe-)?(\d+)-", name)
    return int(m.group(1)) if m else None


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _delete(name):
    """Kill what still runs in namespace `name` (processes a test started there), then
    remove it; its veth ends go with it."""
    for _ in range(3):
        pids = _run(["ip", "netns", "pids", name], check=False).stdout.split()
        if not pids:
            break
        for p in pids:
            try:
                os.kill(int(p), signal.SIGKILL)
            except (ValueError, OSError):
                pass
        time.sleep(0.2)
    _run(["ip", "netns", "del", name], check=False)


def cleanup_leftovers():
    """Remove namespaces of earlier runs that died without cleaning up (owner process gone);
    a concurrent run's namespaces (owner alive) are left alone. Returns the names removed."""
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    gone = []
    for n in sorted(names):
        pid = _owner(n) if n.startswith(NS_PREFIX) else None
        if pid is not None and not _pid_alive(pid):
            _delete(n)
            gone.append(n)
    return gone


class Host:
    """One network namespace."""

    def __init__(self, name):
        self.name = name
        self.path = os.path.join(NETNS_DIR, name)

    def __repr__(self):
        return "<Host %s>" % self.name

    def argv(self, cmd):
        return ["ip", "netns", "exec", self.name] + list(cmd)

    def sh(self, *cmd, check=True, input=None, timeout=CMD_TIMEOUT):
        """Run a command in this namespace; return the CompletedProcess."""
        return _run(self.argv(cmd), check=check, input=input, timeout=timeout)

    def ip(self, *args, check=True):
        return _run(["ip", "-n", self.name] + list(args), check=check)

    def sysctl(self, key, value):
        self.sh("sysctl", "-q", "-w", "%s=%s" % (key, value))

    def run(self, fn, *args, timeout=60, **kw):
        """fn(*args, **kw) in a new thread that has joined this namespace; its result or its
        exception, within timeout seconds."""
        box = {}

        def body():
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    if _libc.setns(fd, CLONE_NEWNET) != 0:
                        e = ctypes.get_errno()
                        raise OSError(e, "setns(%s): %s" % (self.name, os.strerror(e)))
                finally:
                    os.close(fd)
                box["value"] = fn(*args, **kw)
            except BaseException as e:     # handed to the caller's thread
                box["error"] = e

        t = threading.Thread(target=body, daemon=True, name="netns-" + self.name)
        t.start()
        t.join(timeout)
        if t.is_alive():
            raise TimeoutError("%s in %s still running after %ss" % (fn, self.name, timeout))
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def socket(self, family=socket.AF_INET, type=socket.SOCK_STREAM):
        """A socket that belongs to this namespace."""
        return self.run(socket.socket, family, type)


class Topology:
    """device -- gateway -- server, built by create() and removed by destroy() (idempotent,
    also from a SIGTERM handler). Use as a context manager."""

    def __init__(self):
        tag = "%s%d-%s-" % (NS_PREFIX, os.getpid(), secrets.token_hex(3))
        self.device = Host(tag + "dev")
        self.gateway = Host(tag + "gw")
        self.server = Host(tag + "srv")
        self.hosts = (self.device, self.gateway, self.server)
        self.created = []
        self._lock = threading.Lock()

    def __enter__(self):
        return self.create()

    def __exit__(self, *a):
        self.destroy()

    def create(self):
        try:
            self._create()
        except BaseException:
            self.destroy()
            raise
        return self

    def _create(self):
        for h in self.hosts:
            _run(["ip", "netns", "add", h.name])
            self.created.append(h)
            h.ip("link", "set", "lo", "up")
            # A fresh namespace starts with kernel defaults; say the ones the paths rely on.
            h.sysctl("net.ipv4.conf.all.rp_filter", 0)
            h.sysctl("net.ipv4.conf.default.rp_filter", 0)
        d, g, s = self.hosts
        # The veth pairs are made inside the namespaces: their names never exist on the host.
        d.ip("link", "add", "eth0", "type", "veth", "peer", "name", LAN_IF, "netns", g.name)
        s.ip("link", "add", "eth0", "type", "veth", "peer", "name", WAN_IF, "netns", g.name)
        g.sysctl("net.ipv4.ip_forward", 1)
        g.sysctl("net.ipv6.conf.all.forwarding", 1)
        for h, ifname, addrs in ((d, "eth0", (DEVICE4 + "/24", DEVICE6 + "/64")),
                                 (g, LAN_IF, (GW_DEV4 + "/24", GW_DEV6 + "/64")),
                                 (g, WAN_IF, (GW_SRV4 + "/24", GW_SRV6 + "/64")),
                                 (s, "eth0", (SERVER4 + "/24", SERVER6 + "/64",
                                            SERVER_EXTRA4 + "/24", SERVER_EXTRA6 + "/64"))):
            for a in addrs:
                # nodad: the address is usable now, not after duplicate detection.
                h.ip("addr", "add", a, "dev", ifname, *(("nodad",) if ":" in a else ()))
            h.ip("link", "set", ifname, "up")
        d.ip("route", "add", "default", "via", GW_DEV4)
        d.ip("-6", "route", "add", "default", "via", GW_DEV6)
        s.ip("route", "add", "default", "via", GW_SRV4)
        s.ip("-6", "route", "add", "default", "via", GW_SRV6)
        self.wait_links()

    def wait_links(self, timeout=10):
        """Wait until every veth end is up (carrier), so the first packet is not lost."""
        end = time.monotonic() + timeout
        while True:
            down = [h.name for h in self.hosts
                    if "state UP" not in h.ip("-o", "link", "show", "type", "veth").stdout
                    or "LOWER_UP" not in h.ip("-o", "link", "show", "type", "veth").stdout]
            if not down:
                return
            if time.monotonic() > end:
                raise TimeoutError("veth links not up in %s" % down)
            time.sleep(0.05)

    def destroy(self):
        """Kill what runs in the namespaces, remove them (and the veths with them)."""
        with self._lock:
            while self.created:
                _delete(self.created.pop().name)

    # ---- nftables on the gateway ---------------------------------------------------------

    # tcp/dport from the device side that was not handed to the proxy is refused, never
    # forwarded: without it tproxy fails open (no transparent socket listening, e.g. the
    # proxy stopped: the rule does not match and the plaintext goes on to the server).
    FORWARD_CHAIN = ("\tchain forward {\n"
                     "\t\ttype filter hook forward priority filter; policy accept;\n"
                     "\t\tiifname \"%s\" tcp dport %d reject with tcp reset\n"
                     "\t}\n")

    def redirect_rules(self, port, dport=25, iif=LAN_IF):
        """The ruleset that sends the device side's tcp/dport to the gateway's own `port`
        (nat redirect: the original destination stays in conntrack, SO_ORIGINAL_DST)."""
        return ("table inet %s {\n"
                "\tchain prerouting {\n"
                "\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
                "\t\tiifname \"%s\" tcp dport %d redirect to :%d\n"
                "\t}\n" % (NFT_TABLE, iif, dport, port)
                + self.FORWARD_CHAIN % (iif, dport) + "}\n")

    def dnat_rules(self, port, dport=25, iif=LAN_IF):
        """As redirect_rules, with dnat to the gateway's device-side addresses (one rule per
        family: an address needs one)."""
        return ("table inet %s {\n"
                "\tchain prerouting {\n"
                "\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
                "\t\tiifname \"%s\" tcp dport %d dnat ip to %s:%d\n"
                "\t\tiifname \"%s\" tcp dport %d dnat ip6 to [%s]:%d\n"
                "\t}\n" % (NFT_TABLE, iif, dport, GW_DEV4, port, iif, dport, GW_DEV6, port)
                + self.FORWARD_CHAIN % (iif, dport) + "}\n")

    def tproxy_rules(self, port, dport=25, iif=LAN_IF):
        """The ruleset that hands the device side's tcp/dport to a transparent socket on
        `port` without rewriting it (the accepted socket's local address is the original
        destination); needs the policy routing TPROXY_ROUTES."""
        return ("table inet %s {\n"
                "\tchain prerouting {\n"
                "\t\ttype filter hook prerouting priority mangle; policy accept;\n"
                "\t\tiifname \"%s\" tcp dport %d tproxy to :%d meta mark set %d accept\n"
                "\t}\n" % (NFT_TABLE, iif, dport, port, TPROXY_MARK)
                + self.FORWARD_CHAIN % (iif, dport) + "}\n")

    TPROXY_ROUTES = (("-4", "rule", "add", "fwmark", str(TPROXY_MARK), "lookup", str(TPROXY_TABLE)),
                     ("-4", "route", "add", "local", "0.0.0.0/0", "dev", "lo",
                      "table", str(TPROXY_TABLE)),
                     ("-6", "rule", "add", "fwmark", str(TPROXY_MARK), "lookup", str(TPROXY_TABLE)),
                     ("-6", "route", "add", "local", "::/0", "dev", "lo",
                      "table", str(TPROXY_TABLE)))

    def intercept(self, mode, port, dport=25, extra=""):
        """Install the gateway's interception: mode "redirect", "dnat" or "tproxy" (with
        its policy routing) of the device's tcp/dport to `port`; `extra` is more nft text
        (e.g. an output chain). Replaces what an earlier call installed; returns the
        ruleset."""
        rules = {"redirect": self.redirect_rules, "dnat": self.dnat_rules,
                 "tproxy": self.tproxy_rules}[mode](port, dport)
        self.clear_intercept()
        g = self.gateway
        if mode == "tproxy":
            for r in self.TPROXY_ROUTES:
                g.ip(*r)
        g.sh("nft", "-f", "-", input=rules + extra)
        return rules

    def clear_intercept(self):
        g = self.gateway
        g.sh("nft", "flush", "ruleset")
        for fam in ("-4", "-6"):
            while g.ip(fam, "rule", "del", "fwmark", str(TPROXY_MARK), "lookup",
                       str(TPROXY_TABLE), check=False).returncode == 0:
                pass
            g.ip(fam, "route", "flush", "table", str(TPROXY_TABLE), check=False)


def original_dst(sock):
    """(ip, port) the client first connected to, from conntrack (redirect / dnat)."""
    if sock.family == socket.AF_INET6:
        raw = sock.getsockopt(socket.IPPROTO_IPV6, IP6T_SO_ORIGINAL_DST, 28)
        port, = struct.unpack_from("!H", raw, 2)
        return socket.inet_ntop(socket.AF_INET6, raw[8:24]), port
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port, = struct.unpack_from("!H", raw, 2)
    return socket.inet_ntop(socket.AF_INET, raw[4:8]), port


def transparent_listener(family, port, transparent):
    """A listening socket on the wildcard address of `family` (IPv6 only for AF_INET6),
    with IP_TRANSPARENT / IPV6_TRANSPARENT when `transparent` (what tproxy needs). Call it
    through Host.run so it belongs to that host."""
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    if transparent:
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_TRANSPARENT, 1)
        else:
            s.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
    s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
    s.listen(16)
    return s


def install_sigterm_cleanup(topology):
    """On SIGTERM remove topology's namespaces before dying as SIGTERM would have us die
    (SIGKILL leaves them to the next run's cleanup_leftovers). Returns a function that
    restores the previous handler."""
    prev = signal.getsignal(signal.SIGTERM)

    def handler(signum, frame):
        topology.destroy()
        signal.signal(signal.SIGTERM, prev if callable(prev) else signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, prev)
